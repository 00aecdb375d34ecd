"""Launching the service's processes, in one place: the command lines of Redis, the API and the worker
(``launch.commands``), the worker supervisor behind ``poseanimate worker`` (``launch.supervisor``), and
the local launchers: free ports, a ``redis-server`` of our own, a stack of child processes
(``launch.local``).

``make up`` (deploy/local/stack.py), the benchmarks (bench/) and the test harness (tests/support) all
start the service through it, so they run the same processes. Torch-free; it imports only the job
core's settings (an import contract in pyproject.toml says so).
"""
