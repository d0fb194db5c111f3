# Two entry points for a fresh machine: `make table3` (the main job) and `make test`.
# Both create .venv from the pinned requirements.txt when it is missing.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: table3 test test-slow proto bench

$(STAMP): requirements.txt setup.cfg
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

table3: $(STAMP)
	$(VENV)/bin/replicate table3

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow tests

# Regenerate convert/caffe_pb2.py from convert/caffe.proto (the generated module is committed).
proto: $(STAMP)
	$(PY) -m pip install -q grpcio-tools==1.85.1
	$(PY) -m grpc_tools.protoc -Iconvert --python_out=convert convert/caffe.proto

bench: $(STAMP)
	$(PY) benchmarks/run_all.py
