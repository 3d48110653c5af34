"""Blind speckle decorrelation of complex SLC images (Lapini et al., IEEE TGRS 2014).

Single-look complex images are not spatially white: the processor's spectral weighting
(Hamming, Kaiser, the antenna pattern in azimuth) shapes the spectrum and oversampling leaves
part of it empty, so neighbouring pixels are correlated (|lag-1| about 0.5-0.6). Blind-spot
networks such as Speckle2Void need white speckle. Following Lapini et al. (2014), separately
for azimuth (rows, axis 0) and range (columns, axis 1):

1. point targets (intensity >= cf x median) are replaced by complex Gaussian noise of the local
   power, so that deterministic scatterers neither bias the spectra nor ring after whitening;
2. the spectral centroid (Doppler centroid in azimuth) is estimated from the phase of the
   lag-1 correlation, as a plane: a constant, a drift along the axis (TOPS azimuth spectra
   sweep through the band) and a slope across it (Doppler varying with range); the signal is
   demodulated by it;
3. the averaged periodogram of the demodulated signal (Hann-windowed segments with 50 %
   overlap, weighted by their power up to the typical speckle power, less the share of
   replaced point targets) gives the system response: the band edges are where the spectrum
   steps down to its floor, the centroid is refined to the band's middle, and the amplitude
   response is fitted in band by a smooth Chebyshev series;
4. each line is whitened by 1/response in band, out-of-band frequencies set to zero, with a
   gain that keeps the mean intensity; optionally the spectrum is cropped to the band
   (``spectral`` resampling) or the line subsampled by an integer factor, which removes the
   oversampling correlation that whitening alone leaves;
5. the centroid is restored (when asked) and the original point-target values are put back,
   bit-identical (without resampling).

The filters are separable, so large images go in two passes with whole-line FFTs (rows, then
columns), each holding one strip in memory, exactly as if the whole image were transformed at
once. With ``estimation_window`` > 0 the image is instead cut into windows, each whitened with
its own estimate (for products whose spectra change across the scene), through the tiling
engine (no resampling then).

Layouts: complex arrays are (channels, rows, cols); frequencies are in cycles per pixel, in
[-0.5, 0.5).

Modules, in the order a run uses them: ``settings`` (what is asked, the outputs, the method's
constants; torch-free), ``sources`` (complex inputs and outputs), ``spectra`` (point targets,
axis plans, statistics over strips, band and response fits), ``estimation`` (the estimation
pass), ``whitening`` (the whitening and resampling passes, measurement), ``plots`` (the PNG of
the spectra), ``pipeline`` (whole runs: ``decorrelate_raster``, what ``sar_despeckle:decorrelate``
runs, and ``decorrelate_array``; the report). This ``__init__`` imports nothing, so
``core.decorrelation.settings`` loads without torch.
"""
