"""Folds `perf script` output into compact stacks and sums them up.

    python3 bench/fold.py SCRIPT_TXT OUT_DIR

Writes OUT_DIR/folded.txt (one `thread;outer;...;inner count` line per
stack seen twice or more, generic arguments and inlined helpers dropped so
that the file stays small) and
OUT_DIR/summary.txt: the share of all samples per thread; the share spent
in user space and in the kernel, and of user space the share of each part
of the gateway (a sample counts for the first part in COMPONENTS that its
stack passes through); and the share under each frame of Portcullis,
hyper, SQLite, the allocator and the system calls (inclusive: a frame
counts once per stack).
"""

import collections
import re
import sys

GENERICS = re.compile(r"<[^<>]*>")
WATCHED = ("portcullis", "hyper", "sqlite3", "malloc", "free", "writev", "recv",
           "epoll_wait", "clock_gettime", "libc_write", "aho_corasick")


# The parts of a request's user-space work, most specific first.
COMPONENTS = (
    ("the pipeline's stages", "portcullis_gateway::pipeline::run"),
    ("the origin request's head", "portcullis_gateway::proxy::upstream_head"),
    ("the decision event", "portcullis_gateway::proxy::record"),
    ("request setup", "portcullis_gateway::proxy::begin"),
    ("the origin client", "portcullis_gateway::origin"),
    ("the rest of the request function", "portcullis_gateway::proxy::handle"),
    ("the HTTP/1 server (heads, answers)", "portcullis_gateway::h1"),
    ("the HTTP/1 connection loop", "portcullis_gateway::server::http1"),
    ("hyper's HTTP/2 server", "hyper::proto::h2"),
    ("tokio's I/O driver", "tokio::runtime::io::driver"),
    ("tokio's scheduler", "tokio::runtime::scheduler"),
)


def inlined_helper(frame):
    """An inlined generic helper (`poll<...>`, `call_once<...>`): noise."""
    head = frame.split("<", 1)[0]
    return "<" in frame and not frame.startswith("<") and "::" not in head


def simplify(frame):
    frame = frame.split(" (")[0].split("+0x")[0]
    inner = frame[1:] if frame.startswith("<") else frame
    for _ in range(8):
        shorter = GENERICS.sub("", inner)
        if shorter == inner:
            break
        inner = shorter
    return (("<" + inner) if frame.startswith("<") else inner)[:100]


def stacks(lines):
    """Each sample's frames, outermost first after the thread, and whether
    its innermost frame is the kernel's."""
    frames, thread, kernel = [], None, None
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if thread and frames:
                yield [thread] + frames[::-1], kernel
            frames, thread, kernel = [], None, None
        elif not line.startswith((" ", "\t")):
            thread = line.split()[0]
        else:
            if kernel is None:
                kernel = "[kernel." in line
            parts = line.split(None, 1)
            if len(parts) == 2 and not inlined_helper(parts[1].split(" (")[0]):
                frames.append(simplify(parts[1]))
    if thread and frames:
        yield [thread] + frames[::-1], kernel


def component(stack):
    for name, marker in COMPONENTS:
        if marker in stack:
            return name
    return "elsewhere (allocator, clocks, other crates)"


def main(script, out):
    folded = collections.Counter()
    parts, kernel_samples = collections.Counter(), 0
    with open(script, errors="replace") as f:
        for stack, kernel in stacks(f):
            joined = ";".join(stack)
            folded[joined] += 1
            if kernel:
                kernel_samples += 1
            else:
                parts[component(joined)] += 1
    # Stacks seen once are left out of the file (not of the summary): they
    # are noise in a flame graph and most of the bytes.
    with open(f"{out}/folded.txt", "w") as f:
        for stack, n in folded.most_common():
            if n > 1:
                f.write(f"{stack} {n}\n")
    total = sum(folded.values())
    threads, under = collections.Counter(), collections.Counter()
    for stack, n in folded.items():
        frames = stack.split(";")
        threads[frames[0]] += n
        for frame in set(frames[1:]):
            if any(w in frame for w in WATCHED):
                under[frame] += n
    with open(f"{out}/summary.txt", "w") as f:
        f.write(f"# {total} samples; share of all samples by thread:\n")
        for thread, n in threads.most_common():
            f.write(f"{100 * n / total:6.2f}%  {thread}\n")
        user = total - kernel_samples
        f.write(f"\n# User space {100 * user / total:.2f}%, kernel {100 * kernel_samples / total:.2f}% of all samples.\n")
        f.write("# User-space samples by part of the gateway (share of all samples):\n")
        for name, n in parts.most_common():
            f.write(f"{100 * n / total:6.2f}%  {name}\n")
        f.write("\n# Share of all samples under each frame (inclusive), top 60:\n")
        for frame, n in under.most_common(60):
            f.write(f"{100 * n / total:6.2f}%  {frame}\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
