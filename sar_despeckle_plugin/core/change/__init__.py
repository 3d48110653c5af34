"""Change detection between co-registered SAR dates: statistics, thresholds, detectors, the
file pipeline.

``pipeline.detect_changes`` is what ``sar_despeckle:change_detection`` runs; scripts, tests and
the benchmark call it directly. Layouts are (bands, rows, cols) for numpy and (batch, dates, bands, rows, cols) for the
torch stacks the detectors see.

**Data model.** Every date is a (multilooked) sample covariance matrix: single-pol intensity
(p = 1), dual-pol intensities VV, VH (the diagonal of C2: two independent p = 1 blocks) or the
full dual-pol covariance C2 (p = 2, bands C11, C22, Re C12, Im C12). ``n_i`` times the matrix of
date i is complex Wishart with ``n_i`` (the equivalent number of looks) degrees of freedom.
Dates may have different looks. An optional boxcar (``window``) averages the covariance before
the tests; the looks the tests use are then the increased ENL ``n_i * window^2 / kappa``, where
``kappa`` >= 1 accounts for spatially correlated speckle (estimated from the data, 1 for white
speckle), and are reduced pixel by pixel where the window holds nodata.

**Omnibus test** (Conradsen, Nielsen, Skriver 2016, "Determining the points of change in time
series of polarimetric SAR data", IEEE TGRS 54(5)): H0: all k dates share one covariance. With
the looks-weighted mean C = sum n_i C_i / n, n = sum n_i,

    ln Q = sum_i n_i ln|C_i| - n ln|C|,            f = m p^2 (k - 1)
    rho = 1 - (2p^2 - 1) / (6 p (k - 1)) (sum 1/n_i - 1/n)
    omega2 = m [p^2 (p^2 - 1) / (24 rho^2) (sum 1/n_i^2 - 1/n^2) - p^2 (k - 1) / 4 (1 - 1/rho)^2]
    P(-2 rho ln Q <= z) ~ P(chi2_f <= z) + omega2 [P(chi2_{f+4} <= z) - P(chi2_f <= z)]

(with equal looks these are the paper's formulas; unequal looks give Box's general form). ``m``
is the number of independent Wishart blocks: 1 for single-pol and C2, 2 for the dual-pol
diagonal, which is the *diagonal-only Wishart* form: ln Q is the sum of the two p = 1 statistics,
-2 rho ln Q is then approximately chi2 with 2 (k - 1) degrees of freedom and the omega2 terms of
the two independent blocks add (their characteristic functions multiply). It assumes VV and VH
uncorrelated (reflection symmetry); use the C2 layout when the cross term matters.

**Sequential form** (same paper; the Earth Engine implementation of Canty et al. 2020 follows
it): ln Q = sum_{j=2..k} ln R_j, R_j testing date j against the pooled dates 1..j-1 (a two-sample
test with looks N_{j-1} = n_1 + ... + n_{j-1} and n_j). A pixel changed when the omnibus test
rejects at ``significance``; its first change date is the first j whose R_j rejects (the j with
the smallest R_j p-value when none does on its own).

**Log-ratio.** For dates a, b and each intensity channel c, D_c = ln(I_b / I_a) minus its no-change
mean psi(n_b) - ln n_b - psi(n_a) + ln n_a (unequal looks bias the plain ratio), divided by its
no-change standard deviation sqrt(psi1(n_a) + psi1(n_b)). The change index is
x = sqrt(sum_c D_c^2): |D| for single-pol, the root of the summed squared standardised log-ratios
for dual-pol (the dual-pol combination; C11 and C22 for C2). x^2 is about chi2 with one degree of
freedom per channel under no change: that gives the p-value map. The mask uses an automatic
threshold on x from the whole image: Kittler-Illingworth minimum error with generalized Gaussian
classes (on x, as Bazi et al. 2005 on the log-ratio) or Gamma classes (on x^2, exact for Gaussian
log-ratios), or Otsu. With more than two dates each consecutive pair gets its own threshold and the
first pair over it gives the change date.

**Learned detector** (``detectors.LearnedDetector``): the network of ``core.models.change_net``
(siamese dilated CNN with global attention, after MTDN's change branch), trained by
``python -m training`` in ``change`` mode, on each pair of consecutive dates; the card is picked by
the band layout (``change_default`` for dual-pol and C2, ``change_single`` for single-pol); the
map is the change probability.

**Unsupervised detector** (``unsupervised.UnsupervisedDetector``): per pair, a small CNN trained
on the pair itself from the confident pixels of a log-ratio + Otsu pre-classification, applied to
every pixel; the map is the change probability.

**Defaults** (what a run does with nothing set): METHOD automatic (``automatic``: the learned
detector for dual-pol dates of the looks it was trained on, else the unsupervised detector),
PREFILTER (``prefilter``: one despeckler, chosen by ``core.despeckle`` for the most demanding
date, run on every date at its own looks; the omnibus test and C2 get an adaptive boxcar), the
log-ratio thresholds held above a noise floor measured on the image (``thresholds.noise_floor``)
and MIN_AREA from the correlation area of the log-ratio's error (``mapping_unit``).

**Adding a method**: subclass ``detectors.ChangeDetector`` (``halo`` for its receptive field,
``fit`` to look at a sample of the image before the tiled pass, ``detect`` from a
``detectors.Stack`` to (map, changed, date)), register a factory in ``detectors.DETECTORS`` and
append its id to ``choices.CHANGE_METHOD_LABELS``.

Modules, in the order a run uses them: ``settings`` (what is asked, the outputs, the report,
their checks; torch-free), ``parameters`` (the Processing parameters' values -> settings),
``looks`` (looks, speckle correlation and radiometric gains from the sample), ``automatic``
(METHOD automatic's choice; torch-free), ``prefilter`` (speckle handled before the decision),
``statistics`` (Wishart and log-ratio tests), ``thresholds`` (automatic thresholds on the
log-ratio index, and their noise floor), ``detectors`` (one per METHOD, and their registry),
``unsupervised`` (the detector trained on the pair), ``mapping_unit`` (the measured MIN_AREA),
``regions`` (sieve and polygons of the mask, with GDAL; torch-free), ``boundaries``
(REFINE_BOUNDARIES: the outlines re-decided by the half-contrast rule after the sieve), ``pipeline`` (whole runs:
``detect_changes``).
This ``__init__`` imports nothing, so ``core.change.settings`` loads without torch.
"""

