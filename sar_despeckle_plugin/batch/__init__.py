"""The batch runner: one provider algorithm over many scenes on Dask distributed, without QGIS
(``python -m sar_despeckle_plugin.batch run ...``; docs/batch.md).

:mod:`.algorithms` maps each algorithm id to its parameters and settings (the families'
``core.<family>.parameters``, shared with the Processing algorithms) and its core call;
:mod:`.scenes` turns ``--inputs`` into tasks, output paths and completion records; :mod:`.runner`
runs the tasks on Dask (imported there only); :mod:`.cli` is the command line.
"""
