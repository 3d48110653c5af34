"""Screenshots of the plugin in the real QGIS 3.22 window, as a user meets it (issue 18).

    make screenshots            # = python3 scripts/qgis_window_screenshots.py --out build/screenshots

Run with a plain Python, the script starts a virtual display (Xvfb), then the QGIS desktop with
this checkout's plugin in a throw-away profile, and hands itself to QGIS (``qgis --code``). Run
inside QGIS, it enables the plugin as the Plugin Manager does and saves into the output folder:

- ``toolbox_<words>.png``: the Processing Toolbox filtered by what users type;
- ``dialog_<algorithm>.png``: each algorithm's and example workflow's dialog with its help;
- ``output_<name>.png``: the window after each styled output was loaded (alone on the map, its
  legend in the Layers panel), from the real Sentinel-1 crops in ../shared/data when present,
  synthetic images otherwise;
- ``report_<name>.png``: the despeckling and decorrelation reports' pages;
- ``modeler_<model>.png``: the graphical modeler with each shipped example workflow;
- ``index.md``: what each picture shows.

Slow (a few minutes on two busy cores) and needs a display server, so it is not part of ``make test``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

#: The checkout (QGIS runs this file's text, without ``__file__``: the launcher passes it on).
ROOT = os.environ.get("SAR_SCREENSHOTS_ROOT") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGIN = "sar_despeckle_plugin"
SHARED_GRD = os.path.join(os.path.dirname(ROOT), "shared", "data", "grd", "s1_grdh_spain_vegabaja_20190917_{}.tif")
#: Toolbox searches to show.
SEARCHES = ("speckle filter", "lee", "sentinel", "sar despeckle")
SIZE = (1400, 900)


# -- run from a shell: a virtual display and the QGIS desktop -------------------------------------

def free_display() -> int:
    """A display number no X server holds."""
    for number in range(99, 200):
        if not os.path.exists(f"/tmp/.X11-unix/X{number}") and not os.path.exists(f"/tmp/.X{number}-lock"):
            return number
    raise RuntimeError("no free X display number between 99 and 199")


def launch(out: str, timeout: float) -> int:
    """Start Xvfb and QGIS running this file; return QGIS's exit status."""
    if shutil.which("Xvfb") is None:
        sys.exit("Xvfb is not installed: sudo apt-get install xvfb (make setup installs it)")
    os.makedirs(out, exist_ok=True)
    display = free_display()
    xvfb = subprocess.Popen(["Xvfb", f":{display}", "-screen", "0", f"{SIZE[0]}x{SIZE[1]}x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    profile = tempfile.mkdtemp(prefix="qgis-screenshots-profile-")
    try:
        time.sleep(1.0)
        env = dict(os.environ, DISPLAY=f":{display}", QT_QPA_PLATFORM="xcb", QGIS_PLUGINPATH=ROOT,
                   QGIS_CUSTOM_CONFIG_PATH=profile, SAR_SCREENSHOTS_OUT=os.path.abspath(out), SAR_SCREENSHOTS_ROOT=ROOT,
                   PYTHONPATH=os.pathsep.join(filter(None, [venv_site_packages(), ROOT, os.environ.get("PYTHONPATH")])))
        with open(os.path.join(out, "qgis.log"), "w") as log:
            done = subprocess.run(["qgis", "--nologo", "--noversioncheck", "--code", os.path.join(ROOT, "scripts", "qgis_window_screenshots.py")],
                                  env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
        return done.returncode
    finally:
        xvfb.terminate()
        xvfb.wait(timeout=30)
        shutil.rmtree(profile, ignore_errors=True)


def venv_site_packages() -> str:
    """The project venv's site-packages (torch), when the venv exists."""
    found = [os.path.join(ROOT, ".venv", "lib", name, "site-packages")
             for name in sorted(os.listdir(os.path.join(ROOT, ".venv", "lib")))] if os.path.isdir(
        os.path.join(ROOT, ".venv", "lib")) else []
    return found[0] if found else ""


# -- run inside QGIS: the tour -------------------------------------------------------------------

class Tour:
    """The steps inside the QGIS window; each saves its pictures and a line for index.md."""

    def __init__(self, iface, out: str) -> None:
        self.iface, self.out = iface, out
        self.data = os.path.join(out, "data")
        os.makedirs(self.data, exist_ok=True)
        self.index: list[str] = ["# SAR Despeckle in the QGIS 3.22 window", ""]

    # helpers
    @staticmethod
    def settle(seconds: float = 0.5) -> None:
        """Let Qt paint (and QGIS render) for ``seconds``."""
        from qgis.PyQt.QtCore import QCoreApplication

        end = time.monotonic() + seconds
        while time.monotonic() < end:
            QCoreApplication.processEvents()
            time.sleep(0.02)

    def save(self, widget, name: str, what: str) -> None:
        self.settle()
        widget.grab().save(os.path.join(self.out, name))
        self.index.append(f"- `{name}`: {what}")

    # steps
    def enable_plugin(self) -> None:
        import qgis.utils

        self.iface.mainWindow().setGeometry(0, 0, *SIZE)  # Xvfb has no window manager to maximise it
        qgis.utils.loadPlugin(PLUGIN)
        qgis.utils.startPlugin(PLUGIN)
        self.settle(1.0)

    def toolbox(self) -> None:
        from qgis.PyQt.QtWidgets import QDockWidget

        dock = self.iface.mainWindow().findChild(QDockWidget, "ProcessingToolbox")
        dock.show()
        dock.setFloating(True)
        dock.resize(520, 760)
        for words in SEARCHES:
            dock.searchBox.setText(words)
            self.settle(0.8)
            dock.algorithmTree.expandAll()
            self.save(dock, f"toolbox_{words.replace(' ', '_')}.png",
                      f"the Processing Toolbox filtered by '{words}' (QGIS's own search over names, tags "
                      "and short descriptions), with the plugin's icon and groups")
        dock.searchBox.setText("")
        dock.hide()

    def dialogs(self) -> None:
        import processing
        from qgis.core import QgsApplication

        for algorithm in QgsApplication.processingRegistry().providerById("sar_despeckle").algorithms():
            dialog = processing.createAlgorithmDialog(algorithm.id())
            dialog.resize(1200, 820)
            dialog.show()
            self.save(dialog, f"dialog_{algorithm.name()}.png",
                      f"the dialog of '{algorithm.displayName()}' ({algorithm.group()}) with its help panel")
            dialog.close()

    def styled_outputs(self) -> None:
        import processing
        from qgis.core import QgsProject

        canvas = self.iface.mapCanvas()
        for algorithm, parameters in self.runs():
            before = set(QgsProject.instance().mapLayers())
            print(f"screenshots: running {algorithm}", flush=True)
            processing.runAndLoadResults(algorithm, parameters)
            for layer_id in set(QgsProject.instance().mapLayers()) - before:
                layer = QgsProject.instance().mapLayer(layer_id)
                root = QgsProject.instance().layerTreeRoot()
                for node in root.findLayers():
                    node.setItemVisibilityChecked(node.layerId() == layer_id)
                    node.setExpanded(node.layerId() == layer_id)
                QgsProject.instance().setCrs(layer.crs())
                canvas.setExtent(layer.extent())
                canvas.refresh()
                self.settle(0.5)
                canvas.waitWhileRendering()
                name = layer.name().split(" — ")[-1].replace(" ", "_").replace("…", "")
                self.save(self.iface.mainWindow(), f"output_{algorithm.split(':')[1]}_{name}.png",
                          f"'{layer.name()}' as loaded after {algorithm}: renderer "
                          f"{layer.renderer().type() if layer.renderer() else 'default'}")
        QgsProject.instance().removeAllMapLayers()

    def runs(self) -> list[tuple[str, dict]]:
        """(algorithm, parameters) of the runs whose outputs are shown."""
        images = sample_images(self.data)
        out = os.path.join(self.data, "out")
        os.makedirs(out, exist_ok=True)
        return [
            ("sar_despeckle:despeckle", {"INPUT": images["single"], "METHOD": 1, "WINDOW": 7,
                                         "OUTPUT": f"{out}/vv_lee.tif", "RATIO": f"{out}/vv_lee_ratio.tif",
                                         "REPORT": f"{out}/vv_lee_report.html"}),
            ("sar_despeckle:despeckle", {"INPUT": images["dual"], "OUTPUT": f"{out}/vv_vh_auto.tif"}),
            ("sar_despeckle:change_detection", {
                "INPUTS": images["dates"], "LOOKS": 4, "CHANGE_MAP": f"{out}/p.tif", "CHANGE_MASK": f"{out}/mask.tif",
                "CHANGE_DATE": f"{out}/date.tif", "CHANGE_POLYGONS": f"{out}/changes.gpkg"}),
            ("sar_despeckle:decorrelate", {"INPUT": images["slc"], "OUTPUT": f"{out}/slc_white.tif",
                                           "OUTPUT_INTENSITY": f"{out}/slc_intensity.tif",
                                           "REPORT": f"{out}/slc_report.json"}),
        ]

    def reports(self) -> None:
        """The HTML reports the Results Viewer lists, rendered as Qt renders them."""
        from qgis.PyQt.QtCore import QUrl
        from qgis.PyQt.QtWidgets import QTextBrowser

        for name, what in (("vv_lee_report.html", "the despeckling quality report (REPORT)"),
                           ("slc_report.html", "the decorrelation report page (REPORT_HTML)")):
            browser = QTextBrowser()
            browser.resize(1000, 880)
            browser.setSource(QUrl.fromLocalFile(os.path.join(self.data, "out", name)))
            browser.show()
            self.save(browser, f"report_{name.replace('.html', '.png')}",
                      f"{what}, rendered by Qt's HTML viewer (the Results Viewer lists it)")
            browser.close()

    def modeler(self) -> None:
        from processing.modeler.ModelerDialog import ModelerDialog
        from qgis.core import QgsApplication

        for algorithm in QgsApplication.processingRegistry().providerById("sar_despeckle").algorithms():
            if algorithm.groupId() != "example_workflows":
                continue
            dialog = ModelerDialog.create(algorithm.create())
            dialog.resize(1300, 850)
            dialog.show()
            self.settle(0.5)
            dialog.view().centerOn(dialog.view().scene().itemsBoundingRect().center())
            self.save(dialog, f"modeler_{algorithm.name()}.png",
                      f"the graphical modeler with the shipped workflow '{algorithm.displayName()}'")
            dialog.setDirty(False)
            dialog.close()

    def run(self) -> None:
        steps = (self.enable_plugin, self.toolbox, self.dialogs, self.styled_outputs, self.reports, self.modeler)
        try:
            for step in steps:
                print(f"screenshots: {step.__name__} at {time.strftime('%H:%M:%S')}", flush=True)  # in qgis.log, to see where a run stops
                step()
        except Exception:  # the traceback goes to the log, and QGIS still quits
            import traceback

            self.index.append("\nFailed:\n```\n" + traceback.format_exc() + "```")
        finally:
            with open(os.path.join(self.out, "index.md"), "w", encoding="utf-8") as stream:
                stream.write("\n".join(self.index) + "\n")
            from qgis.core import QgsProject

            QgsProject.instance().clear()  # nothing to save: no "save changes?" question on exit
            self.iface.actionExit().trigger()


def sample_images(folder: str) -> dict:
    """GeoTIFF inputs: the real Sentinel-1 GRDH crops when ../shared/data has them, synthetic
    speckled scenes otherwise; three synthetic dates with two changes; a synthetic SLC."""
    import numpy as np
    from osgeo import gdal, osr

    rng = np.random.default_rng(0)

    def write(name, bands, data_type=gdal.GDT_Float32, like=None):
        bands = bands[None] if bands.ndim == 2 else bands
        path = os.path.join(folder, name)
        dataset = gdal.GetDriverByName("GTiff").Create(path, bands.shape[2], bands.shape[1], bands.shape[0], data_type)
        if like is not None:
            dataset.SetGeoTransform(like.GetGeoTransform())
            dataset.SetProjection(like.GetProjection())
        else:
            dataset.SetGeoTransform((500000.0, 20.0, 0.0, 4800000.0, 0.0, -20.0))
            srs = osr.SpatialReference()
            srs.ImportFromEPSG(32631)
            dataset.SetProjection(srs.ExportToWkt())
        for index, band in enumerate(bands):
            dataset.GetRasterBand(index + 1).WriteArray(band)
        dataset = None
        return path

    rows, cols = np.mgrid[:256, :256]
    scene = np.where(cols < 128, 1.0, 4.0) * np.where((rows > 150) & (cols > 60), 0.2, 1.0)
    if all(os.path.exists(SHARED_GRD.format(p)) for p in ("vv", "vh")):
        like = gdal.Translate("/vsimem/crop.tif", SHARED_GRD.format("vv"), srcWin=[128, 128, 256, 256])
        vv, vh = (gdal.Open(SHARED_GRD.format(p)).ReadAsArray(128, 128, 256, 256).astype(np.float32)
                  for p in ("vv", "vh"))
        single, dual = write("grdh_vv.tif", vv, like=like), write("grdh_vv_vh.tif", np.stack([vv, vh]), like=like)
    else:
        single = write("scene_vv.tif", (scene * rng.gamma(1.0, 1.0, scene.shape)).astype(np.float32))
        dual = write("scene_vv_vh.tif", np.stack([scene * rng.gamma(1.0, 1.0, scene.shape),
                                                  0.2 * scene * rng.gamma(1.0, 1.0, scene.shape)]).astype(np.float32))
    dates = []
    for t in range(3):
        reflectivity = scene.copy()
        if t >= 1:
            reflectivity[30:90, 30:120] *= 8
        if t >= 2:
            reflectivity[160:230, 150:240] *= 0.1
        dates.append(write(f"date{t + 1}.tif", (reflectivity * rng.gamma(4.0, 0.25, scene.shape)).astype(np.float32)))
    noise = rng.normal(size=(256, 256)) + 1j * rng.normal(size=(256, 256))
    weight = np.fft.ifftshift(np.hamming(256))  # an oversampled, weighted spectrum as SLCs have
    speckle = np.fft.ifft2(np.fft.fft2(noise) * np.outer(weight, weight))
    slc = write("slc.tif", (speckle * np.sqrt(scene)).astype(np.complex64), gdal.GDT_CFloat32)
    return {"single": single, "dual": dual, "dates": dates, "slc": slc}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "build", "screenshots"))
    parser.add_argument("--timeout", type=float, default=600, help="seconds QGIS may take")
    args = parser.parse_args()
    status = launch(args.out, args.timeout)
    index = os.path.join(args.out, "index.md")
    if not os.path.exists(index):
        sys.exit(f"QGIS ended ({status}) without writing {index}: see {args.out}/qgis.log")
    with open(index, encoding="utf-8") as stream:
        text = stream.read()
    print(text)
    if "Failed:" in text:
        sys.exit(1)


def in_qgis() -> bool:
    """Whether this file runs inside the QGIS desktop (``qgis --code``)."""
    try:
        from qgis.utils import iface
    except ImportError:
        return False
    return iface is not None


if in_qgis():
    from qgis.PyQt.QtCore import QTimer
    from qgis.utils import iface as _iface

    _tour = Tour(_iface, os.environ["SAR_SCREENSHOTS_OUT"])
    QTimer.singleShot(2000, _tour.run)
elif __name__ == "__main__":
    main()
