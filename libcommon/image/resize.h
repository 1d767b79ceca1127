/* resize.h - bilinear resampling of float CHW image planes, reproducing PyTorch's CPU kernels of
 * F.interpolate(mode='bilinear', align_corners=False), with and without antialias, in float32.
 *
 * These are the forward values of the engine's differentiable resample and crop-resize ops and of
 * the resample/arcmerge filters. Pure functions: no globals, thread-safe; each call allocates its
 * small index/weight tables (and, for antialias, one intermediate plane) once, never inside the
 * pixel loops.
 *
 * Ownership: src is borrowed (read-only), dst is caller-owned and fully written (=, not +=);
 * src and dst must not overlap. Sizes must be >= 1; no error return (sizes are the caller's
 * contract, checked by assert).
 */
#ifndef DD_IMAGE_RESIZE_H
#define DD_IMAGE_RESIZE_H

/* One output coordinate of the plain bilinear kernel: out = l0 * in[i0] + l1 * in[i1].
 * Exposed so that a backward pass uses exactly the coefficients of the forward. */
typedef struct {
    int i0, i1;
    float l0, l1;
} ImgLinearTap;

/* Fills taps[0..out-1] for resizing `in` samples to `out` samples (align_corners=False):
 * scale = in/out (float), src = max(scale*(o+0.5)-0.5, 0) evaluated in double (as PyTorch 1.13's
 * CPU kernel does), i0 = floor(src), i1 = min(i0+1, in-1), l1 = (float)(src - i0), l0 = 1 - l1;
 * identity when in == out. */
void img_linear_taps(int in, int out, ImgLinearTap *taps);

/* src [C,H,W] -> dst [C,OH,OW], bilinear, align_corners=False, no antialias. Per output pixel:
 * (x00*w0 + x01*w1)*h0 + (x10*w0 + x11*w1)*h1 in float, as PyTorch's generic NCHW kernel. */
void img_resize_bilinear(const float *src, int C, int H, int W, float *dst, int OH, int OW);

/* src [C,H,W] -> dst [C,OH,OW], antialiased bilinear (PyTorch's antialias=True): separable,
 * width first then height; per output index a triangle filter with support max(scale,1) centred at
 * scale*(i+0.5), weights normalised to sum 1. Identical to img_resize_bilinear when upsampling
 * both dimensions up to rounding of the weights. */
void img_resize_bilinear_aa(const float *src, int C, int H, int W, float *dst, int OH, int OW);

/* Crops rows [top, top+h) and columns [left, left+w) of src [C,H,W] (the box must lie inside the
 * image, h, w >= 1), then resizes the crop to dst [C,OH,OW] with img_resize_bilinear:
 * torchvision's resized_crop on a tensor (antialias off). */
void img_crop_resize(const float *src, int C, int H, int W, int top, int left, int h, int w,
                     float *dst, int OH, int OW);

/* img_crop_resize with img_resize_bilinear_aa: torchvision's resized_crop on a tensor with
 * antialias=True (RDED's RandomResizedCrop of its candidate crops, patchsel). */
void img_crop_resize_aa(const float *src, int C, int H, int W, int top, int left, int h, int w,
                        float *dst, int OH, int OW);

/* torchvision's Resize(s) then CenterCrop(crop) on a tensor: the shorter side to s and the longer
 * to int(s * long / short), antialiased (img_resize_bilinear_aa), then the centred crop x crop
 * (offsets round((size - crop) / 2), half to even) into dst [C,crop,crop]. crop <= s. */
void img_resize_short_center_crop(const float *src, int C, int H, int W, int s, int crop, float *dst);

/* src [C,H,W] scaled by max(OH/H, OW/W) to cover OH x OW (sides lround(H*s), lround(W*s), at
 * least OH and OW), antialiased (img_resize_bilinear_aa), then centre-cropped (offsets as
 * img_resize_short_center_crop's) into dst [C,OH,OW]. */
void img_resize_cover_crop(const float *src, int C, int H, int W, float *dst, int OH, int OW);

#endif
