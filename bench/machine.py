"""What the benchmarks say about the machine they ran on (imported by the scripts beside it)."""
import os


def cpu_model():
    """The processor's model name (Linux: /proc/cpuinfo)."""
    try:
        return next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown CPU"


def cpu_line():
    """The processor and its core count, as the results files state it."""
    return f"{cpu_model()}, {os.cpu_count()} cores"
