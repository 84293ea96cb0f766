"""The ``bench`` marker (deselect with ``-m "not bench"``)."""


def pytest_configure(config):
    config.addinivalue_line("markers", "bench: runs the benchmark harness at a tiny scale")
