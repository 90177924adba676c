# The stages of one iteration, for every (task, method, seed, iteration). Iteration i reads
# iteration i-1 through the input functions (paths.stage_inputs); decompose and train_hprime
# exist only for method amplification. Training rules take `threads: config threads`.


rule testset:
    """Generate a task's fixed held-out test set (deterministic; tracked by DVC)."""
    output:
        testset=paths.testset_path(DATA, "{task}"),
    log:
        os.path.join(LOGS, "testsets", "{task}.log"),
    params:
        settings=lambda w: json.dumps({k: task_settings(CFG, w.task)[k] for k in ("params", "curriculum")}
                                      | {"test_set": CFG["test_set"]}, sort_keys=True),
    threads: 1
    shell:
        f"{AMP} stage testset --config {shlex.quote(RESOLVED)} --task {{wildcards.task}} > {{log}} 2>&1"


rule sample:
    """Sample the iteration's contexts and questions at the curriculum size."""
    input:
        unpack(stage_inputs("sample")),
    output:
        **stage_outputs("sample"),
    log:
        stage_log("sample"),
    params:
        settings=lambda w: settings(w.task),
    threads: 1
    shell:
        stage_cmd("sample")


rule decompose:
    """Collect H transcripts within the budget, the teacher of X_{i-1} answering subquestions."""
    wildcard_constraints:
        method="amplification",
    input:
        unpack(stage_inputs("decompose")),
    output:
        **stage_outputs("decompose"),
    log:
        stage_log("decompose"),
    params:
        settings=lambda w: settings(w.task),
        human=CFG["human"],
    threads: 1
    shell:
        stage_cmd("decompose")


rule train_hprime:
    """Train H' (from H'_{i-1}) on every transcript collected so far."""
    wildcard_constraints:
        method="amplification",
    input:
        unpack(stage_inputs("train_hprime")),
    output:
        **stage_outputs("train_hprime"),
    log:
        stage_log("train_hprime"),
    params:
        settings=lambda w: settings(w.task),
    threads: CFG["threads"]
    shell:
        stage_cmd("train_hprime")


rule amplify:
    """Targets: Amplify^{H'}(X_{i-1}) for amplification, the ground truth for supervised."""
    input:
        unpack(stage_inputs("amplify")),
    output:
        **stage_outputs("amplify"),
    log:
        stage_log("amplify"),
    params:
        settings=lambda w: settings(w.task),
    threads: CFG["threads"]
    shell:
        stage_cmd("amplify")


rule distill:
    """Train X_i from X_{i-1} on the replay window of targets (a GPU when device is cuda)."""
    input:
        unpack(stage_inputs("distill")),
    output:
        **stage_outputs("distill"),
    log:
        stage_log("distill"),
    params:
        settings=lambda w: settings(w.task),
    threads: CFG["threads"]
    resources:
        # one unit per job when the stages run on CUDA: `--resources gpu=N` (the default profile
        # sets 1) caps the distill jobs sharing the GPUs; on CPU it is 0 and constrains nothing
        gpu=1 if CFG["device"] == "cuda" else 0,
    shell:
        stage_cmd("distill")


rule evaluate:
    """Evaluate X_i on the fixed test set; write metrics.json and log it to MLflow (never fatal)."""
    input:
        unpack(stage_inputs("evaluate")),
    output:
        **stage_outputs("evaluate"),
    log:
        stage_log("evaluate"),
    params:
        settings=lambda w: settings(w.task),
    threads: CFG["threads"]
    shell:
        stage_cmd("evaluate")
