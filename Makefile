# The two commands of a fresh machine: `make demo` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
GPU_STAMP := $(VENV)/.installed-gpu

.PHONY: demo test lint bench bench-gpu clean

# torch is pinned in the same pip command as everything else so that nothing drags in a CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0 -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/bitprism search --workload digits-cnn --trials 40 --workers 2 \
		--store sqlite:///bitprism.db --job-id demo-digits --export out/best.onnx

# The tests also run the Triton kernels (interpreted on CPU): the gpu extra, for them only.
$(GPU_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[gpu]'
	touch $(GPU_STAMP)

test: $(GPU_STAMP)
	$(BIN)/python -m pytest -q -ra --durations=30

bench: $(STAMP)
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python benchmarks/latency_repeatability.py
	$(BIN)/python benchmarks/ort_cpu_forms.py --batch 32
	$(BIN)/python benchmarks/ort_cpu_forms.py --batch 32 --workload tests.fixtures:bn_cnn
	$(BIN)/python benchmarks/minilm_baselines.py --plot docs/minilm_front.png
	$(BIN)/python benchmarks/openvino_forms.py
	$(BIN)/python benchmarks/compression_methods.py --workload digits-cnn
	$(BIN)/python benchmarks/compression_methods.py --workload minilm-stsb
	$(BIN)/python benchmarks/dashboard_pareto.py

# On a CUDA GPU: the torch-cuda backend's kernels one layer at a time, then whole models.
bench-gpu: $(STAMP)
	$(BIN)/pip install -q -e '.[bench,gpu]'
	$(BIN)/python benchmarks/kernels_gpu.py
	$(BIN)/python benchmarks/torch_cuda_forms.py
	$(BIN)/python benchmarks/torch_cuda_forms.py --workload digits-mixer

lint: $(STAMP)
	$(BIN)/ruff check bitprism tests
	$(BIN)/mypy bitprism

clean:
	rm -rf out bitprism.db bitprism.db-wal bitprism.db-shm bitprism.db-lock
