# slow_cat.py FILE: writes FILE to standard output (a pipe) with a pause of 1.2 s at its middle, the
# pause starting only once the reader has taken some of the first half out of the pipe, so that a
# reader draws its progress line (at most every 0.25 s) before the second half however slowly it
# started (a sanitizer build takes up to half a second to reach its first read; under load, more).
import fcntl, struct, sys, termios, time

data = open(sys.argv[1], "rb").read()
half = len(data) // 2
out = sys.stdout.buffer
out.write(data[:half])
out.flush()
t0 = time.monotonic()
while time.monotonic() - t0 < 20:   # the reader's start: bytes still in the pipe below half
    try:
        left = struct.unpack("i", fcntl.ioctl(1, termios.FIONREAD, b"\0\0\0\0"))[0]
    except OSError:
        break   # not a pipe: the pause alone
    if left < half:
        break
    time.sleep(0.01)
time.sleep(1.2)
out.write(data[half:])
out.flush()
