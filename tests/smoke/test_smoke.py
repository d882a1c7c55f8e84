"""The smoke suite as this repository runs it: the shipped suite's tests, collected here.

The code lives once, in pytest_vllm_serve/suites/smoke/test_smoke.py, so that an
installed plugin can run it from any directory (--vllm-suite smoke, or
--pyargs pytest_vllm_serve.suites).
"""

from pytest_vllm_serve.suites.smoke.test_smoke import *  # noqa: F403
