"""Timing shared by the PyTorch peer scripts (sdpa_decode.py, sdpa_train.py): CUDA
events around a captured CUDA graph of many calls, warmed up, median of the replays."""
import torch


def time_graph(fn, launches, replays, warmup=3):
    """Median, min and max time of one call of fn in milliseconds."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(launches):
            fn()
    for _ in range(warmup):
        g.replay()
    times = []
    for _ in range(replays):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / launches)
    times.sort()
    return times[len(times) // 2], times[0], times[-1]
