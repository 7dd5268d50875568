#!/usr/bin/env python3
"""tests/bench/torch_peer.py — PyTorch's best CPU training configurations for `make bench`.

Owner: kernels (issue 18). The Hugging Face transformers Llama + PEFT LoRA (r 8, alpha 16, on
q_proj and v_proj; or full fine-tuning) with AdamW, batch 4 x 256 — the shapes of
tests/bench/bench_train.c and bench_compute.c — timed per step after one warm-up step:
    hf            float32
    hf_bf16       float32 weights under torch.autocast("cpu", dtype=torch.bfloat16)
                  (oneDNN runs the matmuls in bf16: AVX512_BF16 / AMX where the CPU has them)
    hf_bf16_compile  the same under torch.compile (inductor; needs a C compiler)
The model is the GGUF given, written once as a Hugging Face folder (config.json +
model.safetensors) by peftlua (`peft.train.export`, the same export tests/ref/train/peft_check
uses) under build/tmp/hf_<name>/.

    python3 tests/bench/torch_peer.py MODEL.gguf THREADS [STEPS=2] [VARIANTS=hf,hf_bf16] [METHODS=lora]
    python3 tests/bench/torch_peer.py gemm THREADS [ROWS=1024] [REPS=3]
    python3 tests/bench/torch_peer.py compare MODEL.gguf [THREADS=1,2] [STEPS=2] [VARIANTS=hf,hf_bf16,hf_bf16_compile] [METHODS=lora,full]
The third form runs, per thread count and method, peftlua's steps (build/bench/bench_compute:
compute f32 and bf16, back to back) and then these PyTorch variants, and prints
"peftlua / best PyTorch" for each (best step of each side).
The second form times torch.matmul on the GEMMs of bench_gemm16 (forward x·Wᵀ and input
gradient dy·W of every SmolLM2-135M projection and the head) in float32 and bfloat16: on x86
CPUs PyTorch runs bf16 matmuls through oneDNN, so these are oneDNN's rates on this machine.

Each row names the CPU, the ISA the matmuls can use, the threads and the library versions.
Prints figures only; never fails on time.
"""
import os
import platform
import subprocess
import sys
import time

import torch


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def isa():
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        flags = ""
    if "amx_bf16" in flags:
        return "AMX-BF16"
    if "avx512_bf16" in flags:
        return "AVX512_BF16"
    return "f32 FMA only"


def hf_dir(gguf):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    name = os.path.splitext(os.path.basename(gguf))[0]
    out = os.path.join(root, "build", "tmp", "hf_" + name)
    if not os.path.exists(os.path.join(out, "model.safetensors")):
        host = os.environ.get("PEFT_HOST", os.path.join(root, "build", "peftlua"))
        lua = ('local m = peft.model.load(%r); peft.train.export(m, %r, { format = "safetensors" })'
               % (os.path.abspath(gguf), out)).replace("'", '"')
        subprocess.run([host, "-e", lua], check=True)
    return out


def gemm(threads, M, reps):
    torch.set_num_threads(threads)
    shapes = [("q,o  576->576", 576, 576), ("k,v  576->192", 576, 192), ("gate,up 576->1536", 576, 1536),
              ("down 1536->576", 1536, 576), ("head 576->49152", 576, 49152)]
    print(f"torch gemm: {cpu_name()}, {isa()}, {threads} thread{'s' if threads > 1 else ''}, torch {torch.__version__}"
          f" (mkldnn/oneDNN {'on' if torch.backends.mkldnn.is_available() else 'off'}), rows {M}, best of {reps}")
    print(f"  {'GEMM (W [N,K])':20s} pass  {'f32':>9s} {'bf16':>9s}")
    for name, K, N in shapes:
        for dt_pass in ("fwd", "dx"):
            res = []
            for dt in (torch.float32, torch.bfloat16):
                W = torch.randn(N, K).to(dt)
                a = torch.randn(M, K if dt_pass == "fwd" else N).to(dt)
                f = (lambda: a @ W.t()) if dt_pass == "fwd" else (lambda: a @ W)
                f()
                best = 1e30
                for _ in range(reps):
                    t0 = time.perf_counter()
                    f()
                    best = min(best, time.perf_counter() - t0)
                res.append(2.0 * M * N * K / best * 1e-9)
            print(f"  {name:20s} {dt_pass:4s}  {res[0]:9.1f} {res[1]:9.1f}", flush=True)


def compare(gguf, threads, steps, variants, methods):
    import re
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    bench = os.path.join(root, "build", "bench", "bench_compute")
    for th in threads.split(","):
        for method in methods.split(","):
            env = dict(os.environ, OMP_NUM_THREADS=th)
            out = subprocess.run([bench, str(steps), th, method], env=env, capture_output=True, text=True).stdout
            best = {"f32": 0.0, "bf16": 0.0}
            for line in out.splitlines():
                if " pair " in line:
                    print("peftlua", line.strip(), flush=True)
                    m = re.search(r"f32 +([0-9.]+) tokens/s.*bf16 +([0-9.]+) tokens/s", line)
                    if m:
                        best["f32"] = max(best["f32"], float(m.group(1)))
                        best["bf16"] = max(best["bf16"], float(m.group(2)))
            env = dict(os.environ)
            env.pop("OMP_NUM_THREADS", None)
            out = subprocess.run([sys.executable, os.path.abspath(__file__), gguf, th, str(steps), variants, method],
                                 env=env, capture_output=True, text=True).stdout
            tbest, tname = 0.0, "none"
            for line in out.splitlines():
                if line.startswith("torch"):
                    print(line, flush=True)
                    m = re.search(r"  ([0-9.]+) tokens/s", line)
                    if m and float(m.group(1)) > tbest:
                        tbest, tname = float(m.group(1)), line[11:53].strip()
            pl = max(best.values())
            if tbest > 0 and pl > 0:
                print(f"ratio {method:4s} {th} thread(s): peftlua best {pl:.1f} tokens/s "
                      f"({'bf16' if best['bf16'] >= best['f32'] else 'f32'} compute) / best PyTorch {tbest:.1f} "
                      f"({tname}) = {pl / tbest:.2f}x", flush=True)


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    if sys.argv[1] == "compare":
        a = sys.argv[2:] + [None] * 5
        return compare(a[0], a[1] or "1,2", int(a[2] or 2), a[3] or "hf,hf_bf16,hf_bf16_compile", a[4] or "lora,full")
    if sys.argv[1] == "gemm":
        return gemm(int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 1024,
                    int(sys.argv[4]) if len(sys.argv) > 4 else 3)
    gguf, threads = sys.argv[1], int(sys.argv[2])
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    variants = (sys.argv[4] if len(sys.argv) > 4 else "hf,hf_bf16").split(",")
    methods = (sys.argv[5] if len(sys.argv) > 5 else "lora").split(",")
    torch.set_num_threads(threads)
    import transformers
    import peft
    from transformers import AutoModelForCausalLM
    path = hf_dir(gguf)
    B, T = 4, 256
    g = torch.Generator().manual_seed(0)
    for method in methods:
        for var in variants:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")
            V = model.config.vocab_size
            if method == "lora":
                cfg = peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"])
                model = peft.get_peft_model(model, cfg)
            model.train()
            params = [p for p in model.parameters() if p.requires_grad]
            opt = torch.optim.AdamW(params, lr=2e-4 if method == "lora" else 2e-5)
            bf16 = var.startswith("hf_bf16")

            def step(ids):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    out = model(input_ids=ids, labels=ids)
                out.loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                return out.loss.item()

            fn = step
            if var.endswith("_compile"):
                model.forward = torch.compile(model.forward)
            name = {"hf": "HF + PEFT, fp32", "hf_bf16": "HF + PEFT, bf16 autocast",
                    "hf_bf16_compile": "HF + PEFT, bf16 autocast, torch.compile"}.get(var, var)
            if method == "full":
                name = name.replace("HF + PEFT", "HF")
            try:
                times, losses = [], []
                for s in range(steps + 1):
                    ids = torch.randint(3, V, (B, T), generator=g)
                    t0 = time.perf_counter()
                    losses.append(fn(ids))
                    if s > 0:
                        times.append(time.perf_counter() - t0)
                best = min(times)
                print(f"torch {method:4s} {name:42s} {B * T / best:8.1f} tokens/s (best of {steps}; "
                      f"mean {B * T * len(times) / sum(times):.1f}), loss {losses[-1]:.4f} | {cpu_name()}, "
                      f"matmul ISA {isa() if bf16 else 'f32 FMA'}, {threads} thread{'s' if threads > 1 else ''}, "
                      f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}",
                      flush=True)
            except Exception as e:  # torch.compile without a compiler, etc.
                print(f"torch {method:4s} {name:42s} failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}",
                      flush=True)
            del model, opt


if __name__ == "__main__":
    main()
