-- lua/peft/api.lua — the reference of the Lua API, as data: every public function of every
-- peft.* module and every method of the peftlua objects, with its signature (types in it) and
-- what it does; an example per module. help(fn) in the REPL reads it, docs/api.md is made
-- from it (peftlua -e 'io.write(require("peft.api").markdown())' > docs/api.md), and
-- tests/lua/test_cli.lua checks both ways: every function the modules export has an entry
-- here, every entry names a function that exists, and docs/api.md is what markdown() writes.
local M = {}

-- { module, summary, example, functions = { {name, signature, doc}, ... } }
M.modules = {
  { "model", "Load models (GGUF, safetensors folders, llama2.c .bin) and run them.",
    'local m <close> = peft.model.load("models/SmolLM2-135M-Instruct.Q4_1.gguf")\nprint(m:chat({{role = "user", content = "Hi"}}, {max_tokens = 32}))',
    {
      { "load", "peft.model.load(path: string [, {tokenizer = path, ...}]) -> peft.Model", "Load a model; its tokenizer and chat template come from the same file when it has them." },
    } },
  { "tokenizer", "Exact tokenizers (SentencePiece, BPE, WordPiece, llama2.c) and chat templates.",
    'local tok = peft.tokenizer.load("model.gguf")\nlocal ids = tok:encode("Hello")\nprint(tok:decode(ids))',
    {
      { "load", "peft.tokenizer.load(path: string) -> peft.Tokenizer | nil, message", "Load a tokenizer from a .gguf, tokenizer.json or tokenizer.bin." },
      { "detect", "peft.tokenizer.detect(template: string) -> family: string", "The chat template family a template string belongs to (\"chatml\", \"llama2\", \"llama3\", \"mistral\", \"zephyr\", \"none\")." },
      { "families", "peft.tokenizer.families() -> {string}", "The chat template families the renderer knows." },
    } },
  { "data", "Datasets: reading, checking, rendering (chat templates, loss masks), batching, tool-call metrics.",
    'local train, valid = peft.data.load("train.jsonl", {tokenizer = m, max_seq_len = 512, valid_fraction = 0.1})\nprint(peft.data.format_report(train:report()))',
    {
      { "load", "peft.data.load(path: string, {tokenizer = peft.Model|peft.Tokenizer|path|table, format = \"auto\", max_seq_len = 512, train_on_prompt = false, skip_bad = false, valid = path, valid_fraction = 0, seed = 42, chat = fn, chat_template = true}) -> peft.Dataset, peft.Dataset|nil", "Read and tokenize a data file (text, prompt/completion, chat, alpaca) into examples with loss masks; prompt/completion records use the model's chat template unless chat_template = false." },
      { "validate", "peft.data.validate(path: string [, {format, tokenizer, chat, max_seq_len, train_on_prompt, chat_template}]) -> report | nil, message", "Every issue of a data file (never raises on bad data); report.ok is true when there is none." },
      { "read", "peft.data.read(path: string [, {format}]) -> records, info", "The records as Lua tables and {format, seen, issues}." },
      { "json_canonical", "peft.data.json_canonical(s: string) -> string | nil, message", "JSON with keys sorted and whitespace removed (tool-call comparison)." },
      { "rng", "peft.data.rng(seed: integer) -> peft.DataRNG", "The data pipeline's random generator (same numbers on every platform)." },
      { "toolcall_exact_match", "peft.data.toolcall_exact_match(predicted: string, reference_json: string) -> boolean [, why]", "Exact match of a generated tool call against the reference after JSON canonicalisation." },
      { "toolcall_accuracy", "peft.data.toolcall_accuracy(predictions: {string}, references: {string}) -> number", "Mean exact match." },
      { "eval_pairs", "peft.data.eval_pairs(path: string [, limit: integer]) -> {{messages, reference, line}}", "Prompts (the messages before the last assistant turn) and references of a chat file." },
      { "format_report", "peft.data.format_report(report) -> string", "A dataset report (ds:report(), validate()) as readable lines." },
      { "profile", "peft.data.profile(model: peft.Model, data: path|peft.Dataset [, {max_seq_len, format, valid_fraction, loss_examples = 32, ...}]) -> {examples, target_tokens, target_lengths, target_vocab, target_ttr, target_entropy_bits, base_loss, ...}", "A dataset's complexity profile: sizes, target length distribution, target vocabulary diversity and the base model's mean loss on the targets (peft.tune.suggest_rank reads it)." },
      { "version", "peft.data.version(path: string [, opts]) -> {md5, size, nfiles, dvcfile, cached, root}", "A DVC-compatible version of a file or folder: PATH.dvc, the data in .dvc/cache, a .gitignore line (peftlua data add)." },
    } },
  { "train", "Fine-tuning: the run loop (peft.train.run), the trainer object, export.",
    'local r = peft.train.run {\n  model = "models/SmolLM2-135M-Instruct.Q4_1.gguf", dataset = "train.jsonl", output = "runs/a",\n  max_iters = 200, lora_rank = 16, lora_alpha = 32, learning_rate = 2e-4,\n}\nprint(r.loss, r.output .. "/adapter")',
    {
      { "run", "peft.train.run(options: table) -> result", "Fine-tune: see \"Options of peft.train.run\" and \"Result\" below; help(peft.train.run) in the REPL." },
      { "options", "peft.train.options() -> {descriptor}", "The option descriptors of peft.train.run: {name, type, default, min, max, choices, help, ...}." },
      { "check_options", "peft.train.check_options(options: table) -> nil | message, key", "Check a configuration as peft.train.run does, without running it." },
      { "trainer", "peft.train.trainer(model: peft.Model, {method, optimizer, batch_size, seq_len, grad_accum, learning_rate, ...}) -> peft.Trainer", "A trainer for low-level loops (src/lua/l_train.c lists every option)." },
      { "try_trainer", "peft.train.try_trainer(model, opts) -> peft.Trainer | nil, message, status", "As trainer(), an engine failure returned (status \"nomem\" when the plan does not fit)." },
      { "export", "peft.train.export(model: peft.Model, path: string [, {format = \"gguf\"|\"safetensors\", dtype = \"f32\"|\"f16\"|\"bf16\"|\"base\"}])", "Write the model's weights (merged adapters included) as GGUF or a safetensors folder." },
      { "export_gguf_adapter", "peft.train.export_gguf_adapter(tr | model, [adapter_dir,] path [, {dtype = \"f32\"|\"f16\", modelfile = true, base}]) -> path, modelfile", "A LoRA adapter as a GGUF LoRA file (llama.cpp --lora, Ollama ADAPTER) and an Ollama Modelfile beside it." },
      { "has_checkpoint", "peft.train.has_checkpoint(dir: string) -> boolean", "Whether dir holds a complete checkpoint." },
      { "lock", "peft.train.lock(dir: string [, wait_s: number = 0]) -> lock", "Take dir/peftlua.lock (the holder's pid) as peft.train.run does; a live holder raises \"<dir>: output directory is in use by another run (pid N)\", a dead one's lock is taken over. lock:release(), <close> or the GC give it back." },
      { "isatty", "peft.train.isatty([fd: integer = 2]) -> boolean", "Whether a file descriptor is a terminal." },
      { "interrupted", "peft.train.interrupted() -> boolean", "Whether Ctrl-C or SIGTERM is pending." },
      { "clear_interrupt", "peft.train.clear_interrupt()", "Forget a pending interruption." },
      { "catch_sigterm", "peft.train.catch_sigterm(on: boolean)", "Turn SIGTERM into an interruption (a checkpoint is written) while on." },
      { "now", "peft.train.now() -> number", "Monotonic seconds." },
      { "output_entries", "peft.train.output_entries(dir: string) -> {string} | nil", "The entries of an output folder, nil when it is absent or empty (the refusal to overwrite)." },
      { "metrics_totals", "peft.train.metrics_totals(path: string) -> {elapsed, tokens}", "The last step's elapsed seconds and tokens in a metrics.jsonl (a resumed run continues its totals)." },
      { "base_model_id", "peft.train.base_model_id(model: peft.Model) -> string", "adapter_config.json's base_model_name_or_path: the Hugging Face id the file records (GGUF general.source.huggingface.repository / general.base_model.0.repo_url), else the model's absolute path." },
    } },
  { "fs", "File digests and the file-system steps of dataset versioning and run tracking.",
    'print(peft.fs.hash("train.jsonl", "sha256"))',
    {
      { "hash", "peft.fs.hash(path [, \"md5\"|\"sha256\"]) -> hex, size | nil, message", "A file's digest, streamed (default md5)." },
      { "hash_string", "peft.fs.hash_string(s [, algo]) -> hex", "A string's digest." },
      { "stat", "peft.fs.stat(path) -> {type = \"file\"|\"dir\"|\"other\", size, mode, mtime_ns} | nil", "What is at a path (links followed)." },
      { "list", "peft.fs.list(dir) -> {string}", "The regular files below dir, sorted, .git and .dvc skipped." },
      { "dir", "peft.fs.dir(path) -> {string} | nil, message", "The names directly in a folder, sorted." },
      { "mkdir", "peft.fs.mkdir(path) -> true | nil, message", "mkdir -p." },
      { "copy", "peft.fs.copy(src, dst [, mode]) -> true | nil, message", "An atomic copy (mode default 0644)." },
      { "read", "peft.fs.read(path) -> string | nil, message", "The whole file's bytes." },
      { "write", "peft.fs.write(path, bytes) -> true | nil, message", "Write a whole file atomically (temporary file, fsync, rename, directory fsync): never half a file; a full disk names the path and leaves the previous file." },
      { "realpath", "peft.fs.realpath(path) -> string | nil, message", "The absolute path." },
    } },
  { "track", "Run records (output/run.json), the MLflow file store and its model registry (docs/tracking.md).",
    'local r = peft.train.run{model = m, dataset = "train.jsonl", output = "runs/a", tracking = "mlruns"}\nprint(peft.track.register(r, "sql-adapter", {alias = "champion"}))',
    {
      { "start", "peft.track.start(cfg) -> record", "The run record peft.train.run keeps (run.json from start to end; the MLflow run when tracking)." },
      { "register", "peft.track.register(run, name [, {alias}]) -> version", "A version of a registered model whose source is the run's adapter." },
      { "mlflow_run", "peft.track.mlflow_run(uri [, opts]) -> run", "A new run in the MLflow file store at uri." },
      { "mlflow_experiment", "peft.track.mlflow_experiment(root, name) -> id", "The id of an experiment, made when missing." },
      { "check_key", "peft.track.check_key(kind, key)", "Raise unless key is a valid MLflow param/metric/tag key." },
      { "check_model_name", "peft.track.check_model_name(name)", "Raise unless name is a valid registered model name." },
      { "check_alias", "peft.track.check_alias(alias)", "Raise unless alias is a valid model alias." },
      { "json", "peft.track.json(value [, indent]) -> string", "A Lua value as JSON." },
      { "number", "peft.track.number(x) -> string", "The shortest text that reads back as the same double." },
      { "build", "peft.track.build() -> {commit}", "git describe of the tree peftlua was built from." },
      { "now_ms", "peft.track.now_ms() -> integer", "Wall-clock milliseconds since 1970." },
      { "random_hex", "peft.track.random_hex(n) -> string", "2n hex digits from the system's random source (run ids)." },
    } },
  { "dist", "This process's place in an MPI job: data-parallel training and parallel tuning (docs/distributed.md).",
    'print(peft.dist.rank(), peft.dist.size())   -- mpirun -np 2 peftlua train config.lua',
    {
      { "compiled", "peft.dist.compiled() -> boolean", "Whether peftlua was built with MPI." },
      { "info", "peft.dist.info() -> {compiled, active, launcher, rank, size, local_rank, local_size}", "The job as this process sees it." },
      { "rank", "peft.dist.rank() -> integer", "This rank (0 alone)." },
      { "size", "peft.dist.size() -> integer", "Ranks in the job (1 alone)." },
      { "sum", "peft.dist.sum(list) -> list", "Element-wise sum over every rank in a fixed order (the same bits everywhere)." },
      { "bcast", "peft.dist.bcast(s, root) -> string", "Root's string on every rank." },
      { "barrier", "peft.dist.barrier()", "Wait for every rank." },
      { "send", "peft.dist.send(dest, tag, s)", "A message to one rank (tag 0..29999)." },
      { "recv", "peft.dist.recv([src [, tag [, timeout]]]) -> s, from, tag | nil", "A message (nil on timeout)." },
      { "stats", "peft.dist.stats() -> {bytes_sent, bytes_recv, reductions, reduce_seconds}", "Communication counters." },
      { "reset_stats", "peft.dist.reset_stats()", "Zero the counters." },
      { "enabled", "peft.dist.enabled(flag) -> boolean", "Whether a run is data-parallel (flag, else more than one rank)." },
      { "shard", "peft.dist.shard(it, grad_accum) -> iterator", "This rank's micro-batches of every step." },
      { "minimize", "peft.dist.minimize(fn, space, opts) -> best, value, optimizer", "peft.tune.minimize with trials spread over the ranks." },
      { "null_file", "peft.dist.null_file() -> file", "A file that discards writes (ranks other than 0)." },
      { "null_record", "peft.dist.null_record() -> record", "A run record that records nothing (ranks other than 0)." },
    } },
  { "http", "The HTTP layer (libmicrohttpd) under peftlua serve and peftlua ui (docs/serve.md).",
    'local srv <close> = peft.http.server{port = 0}\nsrv:route("GET", "/hello")\nprint(srv:start())',
    {
      { "server", "peft.http.server{host, port, max_body, max_queue, max_connections, idle_timeout, token, token_cookie, headers} -> peft.HttpServer", "A server whose requests the Lua thread answers in order." },
      { "json", "peft.http.json(value) -> string", "A Lua value as JSON (valid UTF-8)." },
      { "decode", "peft.http.decode(text [, what]) -> value | nil, message", "JSON text as Lua values." },
      { "array", "peft.http.array([t]) -> t", "Mark a table as a JSON array." },
      { "utf8_split", "peft.http.utf8_split(s) -> head, tail", "Split off an incomplete UTF-8 sequence at the end." },
    } },
  { "proc", "Child processes (peftlua ui runs each training in its own).",
    'local pid = peft.proc.spawn({"", "train", "config.lua"}, {stdout = "log.txt"})\nprint(peft.proc.wait(pid, true).code)',
    {
      { "spawn", "peft.proc.spawn(argv [, {stdout, stderr, cwd, env}]) -> pid", "fork + exec in its own process group." },
      { "wait", "peft.proc.wait(pid [, block]) -> nil | {code} | {signal, name}", "A child's end." },
      { "kill", "peft.proc.kill(pid, \"TERM\"|\"KILL\"|\"INT\"|\"STOP\"|\"CONT\"|0) -> true | nil, message", "Signal a child (0: is it alive)." },
      { "self", "peft.proc.self() -> string", "This executable's path." },
      { "pid", "peft.proc.pid() -> integer", "Our pid." },
      { "sleep", "peft.proc.sleep(seconds)", "Sleep." },
    } },
  { "memory", "The counting allocator's numbers, the memory model (estimate, autosize), QLoRA quantisation, the profiler's timeline.",
    'local e = peft.memory.estimate{model = m, method = "lora", batch_size = 4, seq_len = 512}\nprint(peft.memory.report(e))',
    {
      { "estimate", "peft.memory.estimate{model = peft.Model | preset = \"llama2-7b\" | dim =, hidden_dim =, layers =, heads =, kv_heads =, vocab_size =; method, batch_size, seq_len, grad_accum, checkpointing, precision, lora_rank, targets, optimizer, quant, embed_dtype, compute} -> estimate", "Predicted peak bytes by category (weights, adapters, gradients, optimizer, activations, workspace, mapped, total, resident) before a run." },
      { "autosize", "peft.memory.autosize{... as estimate, budget, effective_batch, max_seq_len, min_seq_len} -> fit | nil, message", "The largest batch (kept by accumulation) and sequence length that fit a budget; the message names what would fit." },
      { "quantize", "peft.memory.quantize(model, \"nf4\"|\"nf4_32\"|\"nf4_dq\"|\"q8_0\"|\"bf16\"|\"f16\" [, opts]) -> summary", "Re-store the model's projections (the QLoRA base), in place; opts.embed_dtype = \"q8_0\" re-stores the embedding and output head too." },
      { "format", "peft.memory.format(bytes: number) -> string", "\"1.25 GiB\", \"312.0 MiB\", \"1.0 KiB\", \"12 bytes\"." },
      { "report", "peft.memory.report(estimate) -> string", "An estimate as lines, one per category." },
      { "current", "peft.memory.current([category]) -> integer", "Bytes allocated now." },
      { "peak", "peft.memory.peak([category]) -> integer", "High-water mark." },
      { "stats", "peft.memory.stats() -> {<category> = {current, peak}, total, rss, rss_peak}", "Every category's current and peak bytes." },
      { "reset_peak", "peft.memory.reset_peak()", "Restart the high-water marks." },
      { "budget", "peft.memory.budget([bytes]) -> integer", "Get or set the allocation budget (0: none)." },
      { "categories", "peft.memory.categories() -> {string}", "The category names." },
      { "fail_after", "peft.memory.fail_after(n: integer)", "Make the n-th next engine allocation fail (tests of recovery paths; 0 turns it off)." },
      { "mark", "peft.memory.mark([label]) -> entry", "A timeline snapshot." },
      { "timeline", "peft.memory.timeline() -> {entry}", "The marks, oldest first." },
      { "clear_timeline", "peft.memory.clear_timeline()", "Forget the marks." },
      { "timeline_cap", "peft.memory.timeline_cap([n]) -> cap, stride, marks", "Get or set the number of timeline entries kept." },
      { "json", "peft.memory.json([pretty]) -> string", "The whole profile as one JSON document." },
      { "save_json", "peft.memory.save_json(path [, pretty]) -> true | nil, message", "peft.memory.json() written to a file (output/memory.json)." },
      { "decode_json", "peft.memory.decode_json(s) -> value | nil, message", "A JSON text as Lua values." },
      { "read_json", "peft.memory.read_json(path) -> value | nil, message", "A JSON file as Lua values." },
      { "summary", "peft.memory.summary() -> string", "Current and peak bytes per category, RSS, budget." },
      { "metrics_fields", "peft.memory.metrics_fields(entry) -> string", "A mark as the JSON members of a metrics.jsonl line." },
    } },
  { "memmodel", "The memory model itself (peft.memory.estimate/autosize/quantize are these).",
    'print(peft.memmodel.estimate{preset = "llama2-7b", method = "qlora", batch_size = 1, seq_len = 512}.total)',
    {
      { "estimate", "peft.memmodel.estimate{...} -> estimate", "As peft.memory.estimate." },
      { "autosize", "peft.memmodel.autosize{...} -> fit | nil, message", "As peft.memory.autosize." },
      { "quantize", "peft.memmodel.quantize(model, dtype [, opts]) -> summary", "As peft.memory.quantize." },
    } },
  { "tensor", "Tensors (1-based indices, f32 arithmetic), safetensors files.",
    'local a = peft.tensor.from({{1, 2}, {3, 4}})\nprint(a:matmul(a):totable()[1][1])',
    {
      { "new", "peft.tensor.new(shape: {integer} [, dtype]) -> peft.Tensor", "Zeros." },
      { "from", "peft.tensor.from(table [, {shape, dtype}]) -> peft.Tensor", "A tensor from nested tables or a flat list." },
      { "full", "peft.tensor.full(shape, value) -> peft.Tensor", "Filled with value." },
      { "ones", "peft.tensor.ones(shape) -> peft.Tensor", "Ones." },
      { "zeros", "peft.tensor.zeros(shape) -> peft.Tensor", "Zeros." },
      { "arange", "peft.tensor.arange(n) -> peft.Tensor", "0 .. n-1." },
      { "randn", "peft.tensor.randn(shape, seed) -> peft.Tensor", "Normal random numbers." },
      { "matmul", "peft.tensor.matmul(a, b) -> peft.Tensor", "Matrix product." },
      { "max_abs_diff", "peft.tensor.max_abs_diff(a, b) -> number", "Largest absolute difference." },
      { "dtypes", "peft.tensor.dtypes() -> {string}", "The element types." },
      { "save", "peft.tensor.save(path, {name = tensor, ...})", "Write a safetensors file." },
      { "load", "peft.tensor.load(path) -> {name = tensor}", "Read a safetensors file." },
    } },
  { "hw", "The hardware report and the defaults it drives (threads, memory budget).",
    'print(peft.hw.report())',
    {
      { "info", "peft.hw.info() -> {cpu, arch, os, simd, cores, physical_cores, ram_total, ram_available, blas_core, threads, threads_source, memory_budget, budget_source, ...}", "The machine as peftlua sees it." },
      { "summary", "peft.hw.summary() -> string", "One line for benchmark headers." },
      { "threads", "peft.hw.threads([n]) -> integer", "Get or set the engine's thread count." },
      { "report", "peft.hw.report() -> string", "The machine and the defaults, with where they came from." },
    } },
  { "report", "Charts (PNG) and self-contained HTML reports.",
    'local img = peft.report.line{series = {{name = "loss", x = {1, 2, 3}, y = {3, 2, 1.5}}}}\nimg:save("loss.png")',
    {
      { "line", "peft.report.line{series = {{name, x, y, dashed, color, smooth}}, title, xlabel, ylabel, xlog, ylog, width, height} -> peft.Image", "A line chart." },
      { "bar", "peft.report.bar{categories, series = {{name, values}}, ...} -> peft.Image", "A bar chart." },
      { "scatter", "peft.report.scatter{series = {{name, x, y, labels}}, pareto, ...} -> peft.Image", "A scatter chart (Pareto front optional)." },
      { "hist", "peft.report.hist{values | series, bins, ...} -> peft.Image", "A histogram." },
      { "memory_chart", "peft.report.memory_chart(timeline | path | document [, {top, title, width, height, x}]) -> peft.Image", "The profiler's timeline (memory.json) as a chart." },
      { "html", "peft.report.html{title, subtitle, sections = {...}} -> report", "A one-file HTML report (rep:save(path), rep:render())." },
      { "decode", "peft.report.decode(png: string) -> peft.Raster", "Decode PNG bytes (tests)." },
      { "load", "peft.report.load(path) -> peft.Raster", "Decode a PNG file." },
      { "palette", "peft.report.palette() -> {integer}", "The chart colours (0xRRGGBB)." },
      { "escape", "peft.report.escape(s) -> string", "HTML-escaped text." },
      { "write_file", "peft.report.write_file(path: string, bytes: string) -> true | nil, message", "Write a file atomically (temporary file, fsync, rename, directory fsync), as reports are written." },
      { "base64", "peft.report.base64(s) -> string", "Base64." },
      { "base64_decode", "peft.report.base64_decode(s) -> string", "From base64." },
      { "format_number", "peft.report.format_number(x) -> string", "A number as reports print it." },
    } },
  { "tune", "Bayesian optimisation of hyperparameters.",
    'local best, value = peft.tune.minimize(function(p) return (p.lr - 3e-4)^2 end,\n  {lr = {"real", 1e-5, 1e-2, log = true}}, {budget = 20})',
    {
      { "bayes", "peft.tune.bayes{space, seed, n_init, acq, kernel, constraint, failures, ...} -> optimizer", "A Bayesian optimiser over named parameters (opt:ask(), opt:tell(p, y), opt:best())." },
      { "minimize", "peft.tune.minimize(fn, space [, {budget, history, ...}]) -> best, value, optimizer", "The ask/tell loop around fn." },
      { "suggest_rank", "peft.tune.suggest_rank(model: peft.Model|path, data: path|profile [, {targets, steps, batch_size, bits_per_width = 27, min_rank = 2, max_rank = 64, ...}]) -> {rank, alpha, reasons, profile, bits, capacity_per_rank, params_per_rank, raw}", "A LoRA rank (and alpha) from the data's profile, with the reasons in words; peft.train.run uses it when lora_rank is not given (docs/tune.md, \"Rank from the data\")." },
      { "train", "peft.tune.train{model, dataset, valid, output, space, trials = 16, budget = {steps, seconds}, min_steps, eta = 2, objective = \"val_loss\"|fn, memory_budget, batch_size, max_seq_len, search = \"bayes\"|\"random\", train = {...}, ...} -> {best, trials, json, html, steps_run, ...}", "Bayesian search over real peft.train.run trials with ASHA multi-fidelity, memory-checked and resumable; writes tune.json and tune.html (docs/tune.md, \"Tuning a fine-tune\")." },
      { "pareto", "peft.tune.pareto(history, {metric = \"min\"|\"max\", ...}) -> {entry}", "The non-dominated trials." },
      { "testfn", "peft.tune.testfn(name) -> {name, d, lo, hi, fmin, f}", "Benchmark functions (branin, hartmann6, ...)." },
      { "study_run", "peft.tune.study_run(name, random, seed, budget) -> regret", "One benchmark study (tests)." },
    } },
}

-- { class (metatable name), summary, methods = { {name, signature, doc} } }
M.classes = {
  { "peft.Model", "A loaded model.", {
      { "card", "m:card() -> {name, arch, format, path, params, weight_bytes, dtypes, layers, dim, hidden_dim, heads, kv_heads, vocab_size, context_length, chat_template, source, ...}", "What the model is." },
      { "config", "m:config() -> {dim, hidden_dim, n_layers, n_heads, n_kv_heads, head_dim, vocab_size, seq_len, ...}", "The architecture numbers." },
      { "params", "m:params() -> {name = peft.Tensor}", "The weights by name." },
      { "forward", "m:forward(ids [, {last = boolean}]) -> peft.Tensor [B, T, vocab]", "Logits." },
      { "loss", "m:loss(text | ids) -> mean nats, count", "Mean cross-entropy of a text or token list." },
      { "perplexity", "m:perplexity(path [, {format = \"text\"|\"jsonl\", field, max_seq_len, stride, limit, separator}]) -> perplexity, mean, count", "Perplexity of a file." },
      { "generate", "m:generate(prompt [, {max_tokens, temperature, top_k, top_p, repetition_penalty, seed, stop, greedy, ignore_eos, on_token, special}]) -> text, n_tokens", "Continue a prompt; on_token(piece, id) streams (return true to stop)." },
      { "chat", "m:chat(messages [, generate options]) -> reply, n_tokens", "Answer a conversation through the model's chat template." },
      { "encode", "m:encode(text [, {bos, special}]) -> {integer}", "Token ids." },
      { "decode", "m:decode(ids) -> string", "Text of token ids." },
      { "tokenizer", "m:tokenizer() -> peft.Tokenizer", "The model's tokenizer as an object." },
      { "load_adapter", "m:load_adapter(path [, {name, scale = 1}]) -> name", "Load a LoRA adapter (a PEFT/peftlua adapter folder, its adapter_model.safetensors, or a GGUF LoRA); forward, loss, perplexity, generate and chat then run with the last loaded, or the one named by {adapter = name | false}." },
      { "unload_adapter", "m:unload_adapter([name])", "Drop that adapter, or all of them." },
      { "adapters", "m:adapters() -> {{name, path, r, alpha, rslora, scale, targets, ...}}", "The loaded adapters, in load order." },
      { "close", "m:close()", "Free the model now (also <close> and the GC)." },
    } },
  { "peft.Tokenizer", "A tokenizer (peft.tokenizer.load, m:tokenizer()).", {
      { "encode", "tok:encode(s [, {bos, eos, special}]) -> {integer}", "Token ids (bos/eos default to the vocabulary's add_bos/add_eos)." },
      { "decode", "tok:decode(ids [, {special, keep_prefix}]) -> string", "Text of token ids." },
      { "piece", "tok:piece(id) -> string", "The vocabulary string as stored." },
      { "bytes", "tok:bytes(id) -> string", "The text a token stands for." },
      { "find", "tok:find(s) -> integer | nil", "The id of an exact vocabulary string." },
      { "type", "tok:type(id) -> string", "\"normal\", \"control\", ..." },
      { "vocab_size", "tok:vocab_size() -> integer", "Vocabulary size." },
      { "kind", "tok:kind() -> \"spm\"|\"bpe\"|\"llama2c\"|\"wpm\"", "The algorithm." },
      { "pre", "tok:pre() -> string", "The pre-tokenizer." },
      { "chat", "tok:chat(messages [, {add_generation_prompt, template}]) -> text, spans", "Render a conversation with the chat template; spans: the assistant turns' byte ranges." },
      { "template_family", "tok:template_family() -> string | nil", "The family of the model's own template." },
      { "chat_template", "tok:chat_template() -> string | nil", "The template string." },
      { "close", "tok:close()", "Free now." },
    } },
  { "peft.Dataset", "Tokenized examples with loss masks.", {
      { "count", "ds:count() -> integer", "Number of examples (also #ds)." },
      { "example", "ds:example(i) -> {ids, mask, line, file, len, truncated}", "One example." },
      { "report", "ds:report() -> {path, format, records, examples, tokens, target_tokens, lengths, truncated, duplicates, overlap, issues, ...}", "Statistics (peft.data.format_report prints them)." },
      { "batches", "ds:batches{batch_size, shuffle, packing, seq_len, bucket, drop_last, seed, epochs, as, state} -> peft.DataBatches", "A batch iterator." },
      { "format", "ds:format() -> string", "The data format." },
      { "path", "ds:path() -> string", "The file." },
      { "close", "ds:close()", "Free the dataset." },
    } },
  { "peft.DataBatches", "A batch iterator (`for b in it do`).", {
      { "next", "it:next() -> {ids, targets, batch, seq, n_target, epoch, index, examples} | nil", "The next batch." },
      { "state", "it:state() -> state", "The position (for checkpoints)." },
      { "restore", "it:restore(state)", "Go back to a position." },
      { "batches_per_epoch", "it:batches_per_epoch() -> integer", "Batches in one pass." },
      { "close", "it:close()", "Free the iterator." },
    } },
  { "peft.DataRNG", "The data pipeline's random generator.", {
      { "random", "r:random([m [, n]]) -> number", "As math.random." },
      { "shuffle", "r:shuffle(t)", "Shuffle a list in place." },
      { "next", "r:next() -> integer", "The next raw 64-bit value." },
      { "state", "r:state() -> state", "The generator's state." },
      { "set_state", "r:set_state(state)", "Restore a state." },
    } },
  { "peft.Trainer", "A trainer (peft.train.trainer).", {
      { "micro", "tr:micro(ids, targets) -> loss, count, stepped | nil, message, status", "One micro-batch (steps after grad_accum of them); out of memory or a file error returned (status \"nomem\" | \"io\"), other failures raise, as for eval, grad and step." },
      { "eval", "tr:eval(ids, targets) -> loss sum, count | nil, message, status", "Loss without gradients or dropout." },
      { "grad", "tr:grad(ids, targets) -> loss | nil, message, status", "Gradients of one batch only." },
      { "step", "tr:step() -> true | nil, message, status", "Optimizer step over what accumulated." },
      { "recover", "tr:recover(status [, message]) -> from, to | nil, message, status", "After a failed step: rewind, and for \"nomem\" re-plan at half the rows (retry the step); else why it cannot be retried." },
      { "rewind", "tr:rewind()", "Drop a partly accumulated step." },
      { "shrink", "tr:shrink() -> rows", "Re-plan at half the rows per forward." },
      { "replan", "tr:replan(rows)", "Re-plan for exactly rows rows per forward." },
      { "stats", "tr:stats() -> {step, micro, lr, grad_norm, loss, tokens, params, method, precision, ...}", "The trainer's numbers." },
      { "config", "tr:config() -> table", "The trainer's resolved configuration, defaults filled in (the run record's \"trainer\")." },
      { "grad_of", "tr:grad_of(name) -> {number}", "A trained tensor's gradient." },
      { "save", "tr:save(dir [, blob])", "Write a checkpoint (atomic)." },
      { "load", "tr:load(dir) -> blob | nil", "Read a checkpoint." },
      { "save_adapter", "tr:save_adapter(dir [, base_model_name_or_path])", "Write the adapter in PEFT's layout." },
      { "merge", "tr:merge()", "Merge the adapters into the model's weights." },
      { "adapters", "tr:adapters(on: boolean)", "Switch the adapters on or off in forward passes." },
      { "close", "tr:close()", "Release the trainer and its adapters (the model can take another trainer)." },
    } },
  { "peft.Tensor", "A tensor (1-based indices; arithmetic with + - * / returns f32 tensors).", {
      { "shape", "t:shape() -> {integer}", "Dimensions." }, { "dtype", "t:dtype() -> string", "Element type." },
      { "numel", "t:numel() -> integer", "Element count." }, { "dim", "t:dim() -> integer", "Number of dimensions." },
      { "size", "t:size(d) -> integer", "One dimension." }, { "nbytes", "t:nbytes() -> integer", "Bytes of data." },
      { "get", "t:get(i, ...) -> number", "One element." }, { "set", "t:set(v, i, ...)", "Set one element." },
      { "item", "t:item() -> number", "The element of a one-element tensor." },
      { "totable", "t:totable() -> table", "Nested tables." }, { "flat", "t:flat() -> {number}", "A flat list." },
      { "reshape", "t:reshape{...} -> peft.Tensor", "Another shape, same data." },
      { "narrow", "t:narrow(d, start, len) -> peft.Tensor", "A slice." }, { "select", "t:select(d, i) -> peft.Tensor", "One index of a dimension." },
      { "transpose", "t:transpose(a, b) -> peft.Tensor", "Swap two dimensions." }, { "t", "t:t() -> peft.Tensor", "Transpose of a matrix." },
      { "is_contiguous", "t:is_contiguous() -> boolean", "Whether the data is dense." },
      { "clone", "t:clone() -> peft.Tensor", "A copy." }, { "copy", "t:copy(src)", "Copy src into t." },
      { "to", "t:to(dtype) -> peft.Tensor", "Converted." }, { "fill", "t:fill(v)", "Set every element." },
      { "matmul", "t:matmul(u) -> peft.Tensor", "Matrix product." },
      { "add", "t:add(u) -> peft.Tensor", "Sum." }, { "sub", "t:sub(u) -> peft.Tensor", "Difference." },
      { "mul", "t:mul(u) -> peft.Tensor", "Product." }, { "div", "t:div(u) -> peft.Tensor", "Quotient." },
      { "pow", "t:pow(p) -> peft.Tensor", "Power." }, { "neg", "t:neg() -> peft.Tensor", "Negation." },
      { "abs", "t:abs() -> peft.Tensor", "Absolute value." }, { "exp", "t:exp() -> peft.Tensor", "Exponential." },
      { "log", "t:log() -> peft.Tensor", "Natural log." }, { "sqrt", "t:sqrt() -> peft.Tensor", "Square root." },
      { "tanh", "t:tanh() -> peft.Tensor", "tanh." }, { "sigmoid", "t:sigmoid() -> peft.Tensor", "Logistic." },
      { "relu", "t:relu() -> peft.Tensor", "max(0, x)." }, { "silu", "t:silu() -> peft.Tensor", "x·sigmoid(x)." },
      { "softmax", "t:softmax(d) -> peft.Tensor", "Softmax along d." },
      { "sum", "t:sum([d]) -> number | peft.Tensor", "Sum (of all, or along d)." }, { "mean", "t:mean([d]) -> number | peft.Tensor", "Mean." },
      { "max", "t:max([d]) -> number | peft.Tensor", "Maximum." }, { "min", "t:min([d]) -> number | peft.Tensor", "Minimum." },
      { "argmax", "t:argmax([d]) -> integer | peft.Tensor", "Index of the maximum (1-based)." },
      { "maximum", "t:maximum(u) -> peft.Tensor", "Elementwise maximum." }, { "minimum", "t:minimum(u) -> peft.Tensor", "Elementwise minimum." },
      { "close", "t:close()", "Free now (also <close> and the GC)." },
    } },
  { "peft.HttpServer", "An HTTP server (peft.http.server).", {
      { "route", "srv:route(method, path [, {body, max_body, spool, auth, prefix}])", "Requests to srv:next()." },
      { "static", "srv:static(prefix, dir [, {auth}])", "Files served by the connection threads." },
      { "fixed", "srv:fixed(method, path, status, body [, {content_type, auth}])", "A fixed answer." },
      { "start", "srv:start() -> port", "Listen." }, { "port", "srv:port() -> integer", "The port." },
      { "queued", "srv:queued() -> integer", "Requests waiting." },
      { "next", "srv:next([timeout_s]) -> request | nil", "The next request (nil on timeout)." },
      { "close", "srv:close()", "Stop." },
    } },
  { "peft.Image", "A chart (peft.report).", {
      { "save", "img:save(path) -> true | nil, message", "Write the PNG." }, { "png", "img:png() -> string", "The PNG bytes." },
      { "size", "img:size() -> w, h", "Pixels." }, { "layout", "img:layout() -> table", "Plot and legend rectangles, text boxes (tests)." },
      { "close", "img:close()", "Free." },
    } },
  { "peft.Raster", "A decoded PNG (tests).", {
      { "size", "r:size() -> w, h", "Pixels." }, { "pixel", "r:pixel(x, y) -> 0xRRGGBB", "One pixel (0-based)." },
      { "diff", "r:diff(other, tol) -> max difference, pixels over tol", "Compare two images." },
      { "count_near", "r:count_near(colors, tol [, x0, y0, x1, y1]) -> count, box", "Pixels near the colours." },
      { "close", "r:close()", "Free." },
    } },
  { "peft.TuneOptimizer", "The C optimiser under peft.tune.bayes.", {
      { "ask", "o:ask([q]) -> values | {values}", "The next point(s) to try." }, { "tell", "o:tell(values, y [, metrics])", "A result." },
      { "best", "o:best() -> values, y | nil", "The best so far." }, { "count", "o:count() -> integer", "Observations." },
      { "obs", "o:obs(i) -> values, y, metrics", "One observation." }, { "pending", "o:pending() -> integer", "Asked, not told." },
      { "clear_pending", "o:clear_pending()", "Forget the pending points." }, { "save", "o:save(path)", "Write the history." },
      { "load", "o:load(path)", "Read a history." }, { "close", "o:close()", "Free." },
    } },
}

-- ------------------------------------------------------------------ lookups for help()
local function find_fn(name)
  local mod, fn = name:match("^peft%.([%w_]+)%.([%w_]+)$")
  if mod then
    for _, m in ipairs(M.modules) do
      if m[1] == mod then for _, f in ipairs(m[4]) do if f[1] == fn then return f end end end
    end
  end
  local cls, meth = name:match("^(peft%.[%w_]+):([%w_]+)$")
  if cls then
    for _, c in ipairs(M.classes) do
      if c[1] == cls then for _, f in ipairs(c[3]) do if f[1] == meth then return f end end end
    end
  end
end
M.find = find_fn

function M.help_function(name)
  local f = find_fn(name)
  if f then return f[2] .. "\n  " .. f[3] end
end

function M.help_module(name)
  for _, m in ipairs(M.modules) do
    if m[1] == name then
      local lines = { "peft." .. name .. " — " .. m[2], "" }
      for _, f in ipairs(m[4]) do lines[#lines + 1] = "  " .. f[2] end
      lines[#lines + 1] = ""
      lines[#lines + 1] = "example:"
      lines[#lines + 1] = "  " .. m[3]:gsub("\n", "\n  ")
      return table.concat(lines, "\n")
    end
  end
end

function M.help_class(name)
  for _, c in ipairs(M.classes) do
    if c[1] == name then
      local lines = { name .. " — " .. c[2], "" }
      for _, f in ipairs(c[3]) do lines[#lines + 1] = "  " .. f[2] end
      return table.concat(lines, "\n")
    end
  end
end

-- ------------------------------------------------------------------ docs/api.md
local OUTPUT = [[
## Output folder

`peft.train.run{output = DIR}` (and `peftlua train`) write:

| Path | What |
|---|---|
| `DIR/adapter/adapter_config.json`, `DIR/adapter/adapter_model.safetensors` | the LoRA adapter in Hugging Face PEFT's layout (`base_model_name_or_path`: the Hugging Face id the model file records, else the model's absolute path); not written for `method = "full"` or `save_adapter = false` |
| `DIR/checkpoint/` | the trainer's checkpoint (weights or adapters, optimizer state, data position), written atomically at `save_every` and at the end; `resume = true` continues from it |
| `DIR/best/` | the adapter of the best validation loss, with `early_stopping` |
| `DIR/metrics.jsonl` | one JSON object per line (below) |
| `DIR/memory.json` | the memory profiler's timeline (`peft.memory.json()`; `peft.report.memory_chart` draws it) |

A run refuses an output folder that is not empty unless `resume = true` (continue) or
`overwrite = true` (the entries above are removed first).

## metrics.jsonl

Every line is one JSON object; `step` is in every line.

| Line | Fields |
|---|---|
| a training step | `step` (integer), `loss` (number, mean nats per scored token of the step), `lr`, `grad_norm` (before clipping), `tokens` (scored tokens — targets counted in the loss — seen by the run so far), `tokens_per_s` (batch tokens per second, every position of the batches, padding included, over `elapsed_s`), `elapsed_s` (seconds since the run began, resumes included), `rss` (bytes), `mem_peak` (tracked peak bytes of the step), `mem_peak_by` ({category: bytes}), `rss_peak`; with `precision = "fp16"` also `loss_scale`, `skipped_steps` |
| an evaluation | `step`, `val_loss` (mean nats per scored validation token) |
| a re-plan after an allocation failure | `step`, `event` = `"shrink"`, `from_rows`, `to_rows`, `chunks`, `error` |

A resumed run keeps the lines up to the checkpoint's step and appends after them.

## Result of peft.train.run

`steps`, `total`, `loss`, `val_loss`, `best_val_loss`, `tokens`, `elapsed` (seconds, resumes
included), `resumed_from` (the step a resumed run started at), `stopped` (`"on_step"`,
`"early_stopping"` or nil), `output`, `method`, `params` (trained parameters), `metrics`,
`memory` (paths), `precision`, `loss_scale`, `skipped_steps`, `shrinks`, `planned_rows`,
`batch_size`, `grad_accum`, `trainer` (the open peft.Trainer: `r.trainer:close()` releases its
adapters; the garbage collector does it otherwise).

Callbacks: `on_step(info)` with `info = {step, total, loss, lr, grad_norm, tokens_per_s,
elapsed, eta, val_loss, loss_scale, skipped_steps}` (return `false` to stop);
`on_eval(info)` with `{step, val_loss, loss}`.
]]

function M.markdown()
  local O = require "peft.train_options"
  local out = {}
  local function add(s) out[#out + 1] = s end
  add("# peftlua Lua API reference")
  add("")
  add("Generated from `lua/peft/api.lua` and the option table `src/train/options.c` (the same tables `help()`")
  add("and the option checks read); `tests/lua/test_cli.lua` fails when this page, the tables or")
  add("the modules disagree. Regenerate: `build/peftlua -e 'io.write(require(\"peft.api\").markdown())' > docs/api.md`.")
  add("Commands (`peftlua train|chat|generate|eval|export|data`) are listed by `peftlua --help`;")
  add("each has `--help`.")
  add("")
  add("## Options of peft.train.run")
  add("")
  add("Unknown keys are refused with the closest known name; a value of the wrong type or out of")
  add("range is refused with the allowed range or choices. `peftlua train CONFIG.lua` takes the")
  add("same keys in a Lua file and as `--key value` flags.")
  add("")
  add("| Option | Type | Default | Range / choices | What |")
  add("|---|---|---|---|---|")
  for _, o in ipairs(O.list) do
    local range = ""
    if o.choices then range = O.type_text(o)
    elseif o.min or o.max then range = O.range_text(o) end
    add(string.format("| `%s` | %s | %s | %s | %s |", o.name, O.type_text(o):gsub("|", "\\|"),
      O.default_text(o):gsub("|", "\\|"), range:gsub("|", "\\|"), o.help:gsub("|", "\\|")))
  end
  add("")
  add(OUTPUT)
  add("## Modules")
  for _, m in ipairs(M.modules) do
    add("")
    add("### peft." .. m[1])
    add("")
    add(m[2])
    add("")
    add("```lua")
    add(m[3])
    add("```")
    add("")
    add("| Function | What |")
    add("|---|---|")
    for _, f in ipairs(m[4]) do add(string.format("| `%s` | %s |", f[2]:gsub("|", "\\|"), f[3]:gsub("|", "\\|"))) end
  end
  add("")
  add("## Objects")
  for _, c in ipairs(M.classes) do
    add("")
    add("### " .. c[1])
    add("")
    add(c[2])
    if #c[3] > 0 then
      add("")
      add("| Method | What |")
      add("|---|---|")
      for _, f in ipairs(c[3]) do add(string.format("| `%s` | %s |", f[2]:gsub("|", "\\|"), f[3]:gsub("|", "\\|"))) end
    end
  end
  add("")
  return table.concat(out, "\n")
end

return M
