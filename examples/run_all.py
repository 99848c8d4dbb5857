"""Run every example in order, each under a heading (this is what `make run` does).

Run: python examples/run_all.py
"""
import importlib.util
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXAMPLES = [
    ("simple_rnn_hello", "1. A SimpleRNN reads HELLO (forward pass, random weights)"),
    ("worked_step", "2. One RNN step by hand, checked against rnnkit's RNN"),
    ("next_digit", "3. Next digit of 0,1,2,3,0,1,... from a window of two (the notebook's bug fixed)"),
    ("hello_memory", "4. HELLO: why the memory matters (RNN vs a memoryless model)"),
]


def load(name: str):
    """Import examples/<name>.py by its path (the examples folder is not a package)."""
    spec = importlib.util.spec_from_file_location(f"rnnkit_example_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> dict:
    results, start = {}, time.perf_counter()
    for name, title in EXAMPLES:
        print(f"\n{'=' * 80}\n{title}   [examples/{name}.py]\n{'=' * 80}")
        results[name] = load(name).main()
    print(f"\nall {len(EXAMPLES)} examples ran in {time.perf_counter() - start:.1f} s")
    return results


if __name__ == "__main__":
    main()
