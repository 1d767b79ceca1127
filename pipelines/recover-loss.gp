# pipelines/recover-loss.gp - recover's loss curves (mean over batches per step) for two runs.
# gnuplot -e "out='x.png'; ttl='...'; a='fadrm/metrics.dat'; ta='FADRM'; b='sre2lpp/metrics.dat'; tb='SRe2L++'" \
#     recover-loss.gp
# Data columns (demo.mk's %/metrics.dat): step, CE, unscaled BN distance, loss = CE + r_bn * BN.
if (strstrt(GPVAL_TERMINALS, "pngcairo") > 0) {
    set terminal pngcairo noenhanced size 1000,450 font ",10"
} else {
    set terminal png noenhanced size 1000,450
}
set output out
set multiplot layout 1,2 title ttl
set xlabel "global step"
set grid
set key top right
set logscale y
set title "loss = CE + r_bn * BN"
plot a using 1:4 with lines lw 2 title ta, b using 1:4 with lines lw 2 title tb
set title "cross-entropy (solid) and BN distance / 100 (dashed)"
plot a using 1:2 with lines lw 2 lc 1 title ta." CE", b using 1:2 with lines lw 2 lc 2 title tb." CE", \
     a using 1:($3/100) with lines dt 2 lc 1 title ta." BN/100", b using 1:($3/100) with lines dt 2 lc 2 title tb." BN/100"
unset multiplot
