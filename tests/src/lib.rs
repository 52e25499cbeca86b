//! Integration tests that start real clockwise processes. The engine's differential
//! conformance test lives in `tests/conformance/ring_diff.py` (run by `scripts/test.sh`).
