"""The model server's startup script: valid bash for every engine, bound to the private address, no secrets."""

from __future__ import annotations

import shlex
import subprocess

import pytest
from stackhelp import HF_TOKEN, make_cfg, make_ctx, secret_needles

from benchctl.errors import ConfigError
from stacks import engines, sizing

ENGINES = ("vllm", "sglang", "tgi", "ollama", "llamacpp")
ARGS = ["--max-model-len", "4096", "--chat-template", "{% for m in messages %}{{ m['content'] }}{% endfor %}"]


def script(engine: str, **extra: object) -> str:
    cfg = make_cfg("aws", top={"inference_engine": engine}, engine={"args": ARGS, **extra})
    return engines.render_engine_script(cfg)


@pytest.mark.parametrize("engine", ENGINES)
def test_script_is_valid_bash_without_secrets(engine):
    text = script(engine)
    assert subprocess.run(["bash", "-n"], input=text, text=True, capture_output=True).returncode == 0, text
    ctx = make_ctx(make_cfg("aws", top={"inference_engine": engine}))
    assert not [needle for needle in secret_needles(ctx) if needle in text]
    assert HF_TOKEN not in text and "hf_FAKE" not in text
    assert engines.HF_TOKEN_PATH in text   # the token is read on the host at run time


@pytest.mark.parametrize("engine", ENGINES)
def test_script_listens_on_the_private_address_only(engine):
    text = script(engine)
    assert "0.0.0.0" not in text and "--network host" in text
    assert 'ip -4 route get' in text
    if engine == "ollama":
        assert 'OLLAMA_HOST="$ADDR:$PORT"' in text
        assert f"ollama pull {shlex.quote('meta-llama/Llama-3.1-8B-Instruct')}" in text
    else:
        assert '"$ADDR"' in text and '"$PORT"' in text
        assert "PORT=" + {"vllm": "8000", "sglang": "30000", "tgi": "8080", "llamacpp": "8080"}[engine] in text


def test_each_engine_runs_its_own_server():
    assert "--entrypoint vllm vllm/vllm-openai:latest serve meta-llama/Llama-3.1-8B-Instruct" in script("vllm")
    assert "lmsysorg/sglang:latest python3 -m sglang.launch_server --model-path" in script("sglang")
    assert "text-generation-inference:latest --model-id meta-llama/Llama-3.1-8B-Instruct --hostname" in script("tgi")
    assert "llama.cpp:server-cuda --hf-repo meta-llama/Llama-3.1-8B-Instruct" in script("llamacpp")
    assert "ollama/ollama:latest" in script("ollama")


def test_engine_args_survive_quoting():
    """The rendered docker command, as bash would split it, ends with the configured args verbatim."""
    text = script("vllm")
    line = next(ln for ln in text.splitlines() if ln.startswith("exec docker run"))
    assert shlex.split(line)[-len(ARGS):] == ARGS


def test_image_override_and_custom_port():
    text = script("vllm", image="vllm/vllm-openai:v0.11.0", port=9000)
    assert "vllm/vllm-openai:v0.11.0" in text and "PORT=9000" in text and ":latest" not in text


def test_simulator_is_refused_on_a_cloud():
    cfg = make_cfg("aws", top={"inference_engine": "simulator"})
    with pytest.raises(ConfigError, match="only with provider = 'local'"):
        engines.render_engine_script(cfg)


def test_unit_supervises_the_script():
    unit = engines.render_unit()
    assert f"ExecStart={engines.SCRIPT_PATH}" in unit and "Restart=on-failure" in unit
    assert "WantedBy=multi-user.target" in unit


@pytest.mark.parametrize(("model", "params", "disk"), [
    ("meta-llama/Llama-3.1-8B-Instruct", 8.0, 100),
    ("Qwen/Qwen2.5-0.5B-Instruct", 0.5, 100),
    ("Qwen/Qwen2.5-32B-Instruct", 32.0, 140),
    ("meta-llama/Llama-3.1-70B-Instruct", 70.0, 235),
    ("mistralai/Mixtral-8x7B-Instruct-v0.1", 56.0, 200),
    ("llama3.2:1b", 1.0, 100),
    ("openai-community/gpt2", None, 100),
])
def test_disk_is_sized_from_the_model(model, params, disk):
    assert sizing.model_params_billion(model) == params
    assert sizing.gpu_disk_gb(make_cfg("aws", top={"model": model})) == disk


STUBS = {
    "ip": 'echo "1.1.1.1 via 10.1.0.1 dev ens5 src 10.1.2.3 uid 0"',
    "lspci": 'echo "00:1e.0 3D controller: NVIDIA Corporation TU104GL [Tesla T4]"',
    "nvidia-smi": "exit 0",
    "curl": "exit 0",
    "docker": ('echo "ARGV $*" >> "$LOG"; echo "ENV_HF_TOKEN=${HF_TOKEN:-}" >> "$LOG"\n'
               'case "$1" in info) echo "Runtimes: nvidia runc";; wait) echo 0;; esac'),
}


@pytest.mark.parametrize("engine", ["vllm", "ollama"])
def test_script_runs_the_engine_on_the_private_address_with_the_token_in_its_environment(engine, tmp_path):
    """Run the script for real against stub tools: what would docker have been asked to do?"""
    bin_dir, log = tmp_path / "bin", tmp_path / "docker.log"
    bin_dir.mkdir()
    for name, body in STUBS.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    token_file = tmp_path / "hf_token"
    token_file.write_text(HF_TOKEN)
    text = script(engine).replace(engines.HF_TOKEN_PATH, str(token_file)).replace(engines.CACHE_DIR,
                                                                                  str(tmp_path / "cache"))
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "LOG": str(log)}
    proc = subprocess.run(["bash", "-c", text], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    calls = log.read_text().splitlines()
    run_argv = next(c for c in calls if c.startswith("ARGV run"))
    assert "--gpus all" in run_argv and "-e HF_TOKEN -e HUGGING_FACE_HUB_TOKEN" in run_argv
    assert HF_TOKEN not in "\n".join(c for c in calls if c.startswith("ARGV"))
    assert f"ENV_HF_TOKEN={HF_TOKEN}" in calls
    if engine == "vllm":
        assert "--host 10.1.2.3 --port 8000" in run_argv
    else:
        assert "OLLAMA_HOST=10.1.2.3:11434" in run_argv
        assert "ARGV exec benchctl-engine ollama pull meta-llama/Llama-3.1-8B-Instruct" in calls
