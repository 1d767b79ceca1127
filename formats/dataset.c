/* dataset.c - which dataset a directory holds, told by the files each layout is known by: IDX
 * (MNIST, Fashion-MNIST), CIFAR-10/100 (binary, then python), an npy directory, an ImageFolder
 * tree. The readers are in idx.c, cifar.c, npydir.c and imagefolder.c. */
#include "formats/codecs.h"
#include "libcommon/base/base.h"

#include <dirent.h>
#include <stdlib.h>

const char *dataset_guess_format(const char *path)
{
    if (!dd_is_dir(path)) return NULL;
    char *p;
    if ((p = dd_find_gz(path, "train-images-idx3-ubyte")) || (p = dd_find_gz(path, "t10k-images-idx3-ubyte"))) {
        free(p);
        return "idx";
    }
    if (dd_has_file(path, "data_batch_1.bin") || dd_has_file(path, "test_batch.bin")) return "cifar10";
    if (dd_has_file(path, "train.bin") && dd_has_file(path, "fine_label_names.txt")) return "cifar100";
    if (dd_has_file(path, "data_batch_1") || dd_has_file(path, "test_batch")) return "cifar10";   /* python */
    if ((dd_has_file(path, "train") || dd_has_file(path, "test")) && dd_has_file(path, "meta")) return "cifar100";
    if (dd_has_file(path, "image.npy")) return "npy";
    DIR *d = opendir(path);
    struct dirent *e;
    int sub = 0;
    while (d && !sub && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char *q = dd_path_join(path, e->d_name);
        sub = dd_is_dir(q);
        free(q);
    }
    if (d) closedir(d);
    return sub ? "imagefolder" : NULL;
}
