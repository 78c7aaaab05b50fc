# One plot of `lla compare`, read from its CSV (the source of truth; docs/compare.md).
# `lla compare` calls it once per plot:
#
#   gnuplot -e "csv='DIR/compare.csv'; out='DIR/plot_01_lambda_o_vs_lambda.svg'; xcol='lambda';
#               ycol='o_max_rel_err'; where='panel=lambda L=1024 D=64 ...';
#               series='lla_cg:bf16 parallax:bf16 ...'; tol=0.01; plot_title='...'" plot.gp
#
# where: space-separated column=value filters (exact text as the CSV writes it);
# series: one line per method:precision. Non-positive, infinite or missing errors
# cannot sit on a log axis and are left out (the CSV and the report keep them).

set datafile separator comma
set terminal svg size 900,560 dynamic enhanced font "sans,12"
set output out

# sel(m, p): the row belongs to series m:p and passes every filter of `where`.
cond = sprintf("strcol('method') eq m && strcol('precision') eq p && strcol('status') eq 'ok'")
do for [w in where] {
  eq = strstrt(w, "=")
  cond = cond . sprintf(" && strcol('%s') eq '%s'", w[1:eq-1], w[eq+1:])
}
eval "sel(m, p) = " . cond

# Copy each series' points into its own datablock first: filtering inside the final
# plot would break the lines at every row of another series.
# Colour by method, dash by precision (solid bf16, dashed fp32, dotted fp16, dash-dot fp64).
methods = "lla_direct_fp32 lla_cg lla_cg_jacobi parallax parallax_gpu softmax"
colours = "#7f3fbf #d62728 #ff7f0e #1f77b4 #17becf #2ca02c"
precisions = "bf16 fp32 fp16 fp64"
n = words(series)
array colour[n]
array dash[n]
array label[n]
array points[n]
do for [i = 1:n] {
  s = word(series, i)
  colon = strstrt(s, ":")
  m = s[1:colon-1]
  p = s[colon+1:]
  colour[i] = "black"
  do for [k = 1:words(methods)] { if (word(methods, k) eq m) { colour[i] = word(colours, k) } }
  dash[i] = 1
  do for [k = 1:words(precisions)] { if (word(precisions, k) eq p) { dash[i] = k } }
  label[i] = m . " " . p
  eval sprintf("set table $s%d", i)
  plot csv using (column(xcol)):(column(ycol)) with table \
       if (sel(m, p) && column(ycol) > 0 && column(ycol) < 1e300)
  unset table
  points[i] = 0
  if (exists(sprintf("$s%d", i))) { eval sprintf("points[%d] = |$s%d|", i, i) }
}

set datafile separator whitespace
set title plot_title noenhanced
set logscale xy
set format y "10^{%L}"
set xlabel (xcol eq "lambda" ? "ridge {/Symbol l}" : "CG iterations")
set ylabel (ycol eq "o_max_rel_err" ? "max-norm relative error of o" : "max-norm relative error, worst gradient")
set grid
set key outside right top noenhanced
# Series without a point on the log axes are left out of the key as well.
cmd = "plot"
do for [i = 1:n] {
  if (points[i] > 0) {
    cmd = cmd . sprintf(" $s%d using 1:2 smooth unique with linespoints lw 2 pt %d lc rgb '%s' dt %d title '%s',", \
                        i, i % 7 + 1, colour[i], dash[i], label[i])
  }
}
eval cmd . " tol with lines dt 2 lc rgb 'black' title sprintf('tolerance %g', tol)"
