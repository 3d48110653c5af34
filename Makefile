# SAR Despeckle: every set-up step lives here, so a fresh Debian 12 machine needs only
# `make demo` and `make test`.  See README.md.

SHELL := /bin/bash
# Debian's system Python carries the qgis and osgeo bindings; the venv sees them.
SYSTEM_PYTHON := /usr/bin/python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_VERSION := 2.13.0
# The batch runner's cluster (optional for the plugin: only sar_despeckle_plugin/batch imports it;
# tests/test_batch.py skips without it).
DASK_VERSION := 2026.8.0
APT_PACKAGES := qgis python3-qgis qgis-providers python3-gdal gdal-bin otb-bin python3-venv python3-scipy python3-h5py zip unzip xvfb
SETUP_STAMP := $(VENV)/.setup-done
PLUGIN := sar_despeckle_plugin
PROFILE_DIR := $(CURDIR)/.qgis-profile
BUILD := build

# Paths found on this machine are looked up when a recipe runs, not when make reads this file:
# on a fresh machine QGIS and the venv appear only once `setup` has run, within the same make.
# So these are recursive (`=`) variables used only inside recipes; never `:=` with `$(shell)`
# (tests/test_makefile.py runs the recipes as on a fresh machine and checks this).
# qgis_process.bin avoids Debian's wrapper, whose --noversioncheck QGIS 3.22 rejects.
QGIS_PROCESS = $(or $(shell command -v qgis_process.bin || command -v qgis_process),qgis_process.bin)
VENV_SITE = $(shell $(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null)
export QT_QPA_PLATFORM := offscreen
QGIS_ENV = QGIS_PLUGINPATH=$(CURDIR) QGIS_CUSTOM_CONFIG_PATH=$(PROFILE_DIR) \
	PYTHONPATH=$(VENV_SITE):$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH}

.PHONY: setup demo test lint bench package install weights models screenshots qgis-process qgis-profile clean

setup: $(SETUP_STAMP)

$(SETUP_STAMP): Makefile
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
		echo "Installing Debian packages: $(APT_PACKAGES)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_PACKAGES); \
	fi
	@test -x $(PY) || $(SYSTEM_PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==$(TORCH_VERSION) pytest pytest-timeout dask==$(DASK_VERSION) distributed==$(DASK_VERSION)
	$(PY) -c "import torch, qgis.core, osgeo.gdal; print('setup ok: torch', torch.__version__, '| QGIS', qgis.core.Qgis.QGIS_VERSION, '| GDAL', osgeo.gdal.__version__)"
	@touch $@

# A project-local QGIS profile with this checkout's plugin enabled.
qgis-profile: $(PROFILE_DIR)/.enabled
$(PROFILE_DIR)/.enabled: $(SETUP_STAMP)
	@mkdir -p $(PROFILE_DIR)
	$(QGIS_ENV) $(QGIS_PROCESS) plugins 2>/dev/null | grep -q '^\* $(PLUGIN)$$' || \
		$(QGIS_ENV) $(QGIS_PROCESS) plugins enable $(PLUGIN) >/dev/null
	@touch $@

qgis-process: qgis-profile
	$(QGIS_ENV) $(QGIS_PROCESS) $(ARGS)

demo: qgis-profile
	$(QGIS_ENV) $(PY) scripts/demo.py --qgis-process "$(QGIS_PROCESS)" --out $(BUILD)/demo

# pytest's configuration and markers are in pyproject.toml; `make test PYTEST_ARGS='-m "not qgis"'`
# runs the QGIS-free part alone.
test: setup
	$(QGIS_ENV) $(PY) -m pytest -q $(PYTEST_ARGS)

# ruff, configured in pyproject.toml; installed into the venv by this target only.
RUFF_VERSION := 0.17.5
RUFF_STAMP := $(VENV)/.ruff-$(RUFF_VERSION)
$(RUFF_STAMP): $(SETUP_STAMP)
	$(PY) -m pip install -q ruff==$(RUFF_VERSION)
	@touch $@

lint: $(RUFF_STAMP)
	$(VENV)/bin/ruff check .

# MuLoG + BM3D, the comparison the network benchmark measures against: a separate venv, so its
# dependencies never touch the plugin's (and it is never shipped).
COMPARE_VENV := $(BUILD)/venv-compare
$(COMPARE_VENV)/.done:
	$(SYSTEM_PYTHON) -m venv $(COMPARE_VENV)
	$(COMPARE_VENV)/bin/pip install -q mulog==0.0.4
	@touch $@

bench: qgis-profile $(COMPARE_VENV)/.done
	$(QGIS_ENV) $(PY) scripts/bench_filters.py --out $(BUILD)/bench
	$(QGIS_ENV) $(PY) scripts/bench_networks.py --out $(BUILD)/bench/networks
	$(QGIS_ENV) $(PY) scripts/bench_multilook.py --out $(BUILD)/bench/multilook
	$(QGIS_ENV) $(PY) scripts/bench_decorrelation.py --out $(BUILD)/bench/decorrelation
	$(QGIS_ENV) $(PY) scripts/bench_change.py --threads 1 --out $(BUILD)/bench/change
	$(QGIS_ENV) $(PY) scripts/bench_multitemporal.py --out $(BUILD)/bench/multitemporal
	$(QGIS_ENV) $(PY) scripts/bench_dualpol.py --out $(BUILD)/bench/dualpol
	$(QGIS_ENV) $(PY) scripts/bench_batch.py --out $(BUILD)/bench/batch
	$(QGIS_ENV) $(PY) scripts/bench_busy.py --qgis-process "$(QGIS_PROCESS)" --out $(BUILD)/bench/busy
	$(PY) scripts/bench_report.py --bench $(BUILD)/bench --output docs/benchmarks.md

# The example graphical models the plugin ships, rebuilt from the algorithms' current parameters
# (tests/test_example_models.py fails while they are stale).
models: setup
	$(QGIS_ENV) $(PY) scripts/build_models.py

# The plugin in the real QGIS desktop under a virtual display (Xvfb): Toolbox searches, every
# dialog, each styled output, the modeler with each example workflow, saved with an index.md
# (a few minutes on 2 busy cores; not part of `make test`).
screenshots: setup
	$(SYSTEM_PYTHON) scripts/qgis_window_screenshots.py --out $(BUILD)/screenshots

package:
	@rm -rf $(BUILD)/package && mkdir -p $(BUILD)/package
	cp -r $(PLUGIN) $(BUILD)/package/
	cp LICENSE $(BUILD)/package/$(PLUGIN)/
	find $(BUILD)/package -depth \( -name __pycache__ -o -name '*.pyc' \) -exec rm -rf {} +
	cd $(BUILD)/package && rm -f ../$(PLUGIN).zip && zip -qr ../$(PLUGIN).zip $(PLUGIN)
	@echo "Built $(BUILD)/$(PLUGIN).zip"

# Installs into the default QGIS 3 profile (override QGIS_PROFILE_PATH for another one).
QGIS_PROFILE_PATH ?= $(HOME)/.local/share/QGIS/QGIS3/profiles/default
install: package
	mkdir -p $(QGIS_PROFILE_PATH)/python/plugins
	rm -rf $(QGIS_PROFILE_PATH)/python/plugins/$(PLUGIN)
	cd $(QGIS_PROFILE_PATH)/python/plugins && unzip -q $(CURDIR)/$(BUILD)/$(PLUGIN).zip
	@echo "Installed into $(QGIS_PROFILE_PATH)/python/plugins/$(PLUGIN); enable it in Plugins > Manage."

# Retrains the shipped networks (the default despeckler in two stages on a 2-core CPU: 42
# minutes from scratch, its config's time budget, then an 11-minute fine-tune with point
# scatterers; the dual-pol change detector, about 6 minutes, the single-pol one 20) and exports
# weights + model cards into the plugin's weights/ folder; the despeckler's card gets its metrics
# from the benchmark protocol (training/benchmark.py, as make bench; about 7 minutes).
weights: setup
	rm -rf $(BUILD)/runs/sarcnn_default $(BUILD)/runs/sarcnn_default_scatterers
	$(PY) -m training train --config training/configs/sarcnn_default.toml --output $(BUILD)/runs/sarcnn_default
	$(PY) -m training train --config training/configs/sarcnn_default_scatterers.toml --output $(BUILD)/runs/sarcnn_default_scatterers
	$(PY) -m training export --checkpoint $(BUILD)/runs/sarcnn_default_scatterers/last.pt --name sarcnn_default --to $(PLUGIN)/weights --overwrite
	$(PY) -m training evaluate --model $(PLUGIN)/weights/sarcnn_default.json --protocol --write-card
	# fine-tuned from sarcnn_default: white speckle of 1-16 looks; GRDH in three stages; from sarcnn_looks: SLC intensities, other products (reading the correlation) and the stack network
	rm -rf $(BUILD)/runs/sarcnn_looks $(BUILD)/runs/sarcnn_grdh $(BUILD)/runs/sarcnn_grdh_mixed $(BUILD)/runs/sarcnn_grdh_looks $(BUILD)/runs/sarcnn_stack
	$(PY) -m training train --config training/configs/sarcnn_looks.toml --output $(BUILD)/runs/sarcnn_looks
	$(PY) -m training export --checkpoint $(BUILD)/runs/sarcnn_looks/last.pt --name sarcnn_looks --to $(PLUGIN)/weights --overwrite
	$(PY) -m training train --config training/configs/sarcnn_grdh.toml --output $(BUILD)/runs/sarcnn_grdh
	$(PY) -m training export --checkpoint $(BUILD)/runs/sarcnn_grdh/last.pt --name sarcnn_grdh --to $(PLUGIN)/weights --overwrite
	$(PY) -m training train --config training/configs/sarcnn_grdh_mixed.toml --output $(BUILD)/runs/sarcnn_grdh_mixed
	$(PY) -m training export --checkpoint $(BUILD)/runs/sarcnn_grdh_mixed/last.pt --name sarcnn_grdh --to $(PLUGIN)/weights --overwrite
	$(PY) -m training train --config training/configs/sarcnn_grdh_looks.toml --output $(BUILD)/runs/sarcnn_grdh_looks
	$(PY) -m training export --checkpoint $(BUILD)/runs/sarcnn_grdh_looks/last.pt --name sarcnn_grdh --to $(PLUGIN)/weights --overwrite
	rm -rf $(BUILD)/runs/sarcnn_slc
	$(PY) -m training train --config training/configs/sarcnn_slc.toml --output $(BUILD)/runs/sarcnn_slc
	$(PY) -m training export --checkpoint $(BUILD)/runs/sarcnn_slc/last.pt --name sarcnn_slc --to $(PLUGIN)/weights --overwrite
	rm -rf $(BUILD)/runs/sarcnn_products
	$(PY) -m training train --config training/configs/sarcnn_products.toml --output $(BUILD)/runs/sarcnn_products
	$(PY) -m training export --checkpoint $(BUILD)/runs/sarcnn_products/last.pt --name sarcnn_products --to $(PLUGIN)/weights --overwrite
	$(PY) -m training train --config training/configs/sarcnn_stack.toml --output $(BUILD)/runs/sarcnn_stack
	$(PY) -m training export --checkpoint $(BUILD)/runs/sarcnn_stack/best.pt --name sarcnn_stack --to $(PLUGIN)/weights --overwrite
	rm -rf $(BUILD)/runs/change_default
	$(PY) -m training train --config training/configs/change_default.toml --output $(BUILD)/runs/change_default
	$(PY) -m training export --checkpoint $(BUILD)/runs/change_default/best.pt --name change_default --to $(PLUGIN)/weights --overwrite
	rm -rf $(BUILD)/runs/change_single
	$(PY) -m training train --config training/configs/change_single.toml --output $(BUILD)/runs/change_single
	$(PY) -m training export --checkpoint $(BUILD)/runs/change_single/best.pt --name change_single --to $(PLUGIN)/weights --overwrite
	# the multi-task despeckling + change network (after MTDN), from sarcnn_looks: 18 minutes at most
	rm -rf $(BUILD)/runs/mtdn_multitask
	$(PY) -m training train --config training/configs/mtdn_multitask.toml --output $(BUILD)/runs/mtdn_multitask
	$(PY) -m training export --checkpoint $(BUILD)/runs/mtdn_multitask/best.pt --name mtdn_multitask --to $(PLUGIN)/weights --overwrite

clean:
	rm -rf $(BUILD) $(PROFILE_DIR)
