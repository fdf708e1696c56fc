"""The model server's startup script, rendered from one place for every cloud.

Every engine runs as a container (`docker run --network host`), started by the systemd unit
`benchctl-engine.service` so that it survives SSH drops and restarts on failure:

    vllm      vllm/vllm-openai          vllm serve MODEL --host ADDR --port PORT ARGS
    sglang    lmsysorg/sglang           python3 -m sglang.launch_server --model-path MODEL --host ADDR --port PORT ARGS
    tgi       ghcr.io/huggingface/text-generation-inference   --model-id MODEL --hostname ADDR --port PORT ARGS
    ollama    ollama/ollama             ollama serve (OLLAMA_HOST=ADDR:PORT), then ollama pull MODEL
    llamacpp  ghcr.io/ggml-org/llama.cpp:server-cuda           llama-server --hf-repo MODEL --host ADDR --port PORT ARGS

Containers rather than pip installs: one mechanism for five engines, no CUDA/PyTorch version
matching on the host, and `[engine].image` pins an exact engine version. The default tags are the
engines' moving ones (`latest`, `server-cuda`): pin a version tag for results you want to compare.

ADDR is resolved on the host at boot: the source address of the default route, which is the
private address on AWS and GCP and the routed flexible IP on Scaleway (guarded there by the
security group). The engine never listens on 0.0.0.0.

The Hugging Face token reaches the host only as `/etc/benchctl/hf_token` (mode 0600, written by
cloud-init from the secret user data) and is read when the script runs and passed to the container
as an environment variable *by name*: the rendered script contains no secret.

The simulator is not rendered: it is part of benchctl, which a bare GPU host does not have.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING

from benchctl.errors import ConfigError

if TYPE_CHECKING:
    from benchctl.config import BenchConfig

SCRIPT_PATH = "/opt/benchctl/engine.sh"
UNIT_NAME = "benchctl-engine.service"
HF_TOKEN_PATH = "/etc/benchctl/hf_token"
CONTAINER = "benchctl-engine"
CACHE_DIR = "/opt/benchctl/cache"


@dataclass(frozen=True)
class EngineSpec:
    image: str
    command: tuple[str, ...]   # tokens after the image; "{model}", "{addr}", "{port}" are filled in
    cache_mount: str           # where the engine keeps downloaded weights inside the container
    entrypoint: str | None = None


ENGINES: dict[str, EngineSpec] = {
    "vllm": EngineSpec(
        image="vllm/vllm-openai:latest", entrypoint="vllm",
        command=("serve", "{model}", "--host", "{addr}", "--port", "{port}"),
        cache_mount="/root/.cache",
    ),
    "sglang": EngineSpec(
        image="lmsysorg/sglang:latest",
        command=("python3", "-m", "sglang.launch_server", "--model-path", "{model}",
                 "--host", "{addr}", "--port", "{port}"),
        cache_mount="/root/.cache",
    ),
    "tgi": EngineSpec(
        image="ghcr.io/huggingface/text-generation-inference:latest",
        command=("--model-id", "{model}", "--hostname", "{addr}", "--port", "{port}"),
        cache_mount="/data",
    ),
    "ollama": EngineSpec(image="ollama/ollama:latest", command=(), cache_mount="/root/.ollama"),
    "llamacpp": EngineSpec(
        image="ghcr.io/ggml-org/llama.cpp:server-cuda",
        command=("--hf-repo", "{model}", "--host", "{addr}", "--port", "{port}", "--n-gpu-layers", "999"),
        cache_mount="/root/.cache",
    ),
}

# Shell expressions (not quoted): the values exist only on the host.
_RUNTIME = {"{addr}": '"$ADDR"', "{port}": '"$PORT"'}

_PRELUDE = r"""#!/usr/bin/env bash
# benchctl model server: {engine} serving {model_comment} on the private address, port {port}.
# Rendered by benchctl (stacks/engines.py); run by {unit}. Contains no secret.
set -euo pipefail
PORT={port}

private_addr() {{
  ip -4 route get 1.1.1.1 2>/dev/null | awk '{{for (i = 1; i < NF; i++) if ($i == "src") {{print $(i + 1); exit}}}}'
}}
ADDR="$(private_addr)"
[ -n "$ADDR" ] || ADDR="$(hostname -I | awk '{{print $1}}')"
[ -n "$ADDR" ] || {{ echo "benchctl: no private address found" >&2; exit 1; }}

GPU_FLAGS=()
if lspci 2>/dev/null | grep -qi nvidia; then
  # Drivers may still be installing on first boot (GCP installs them at boot).
  for _ in $(seq 1 120); do nvidia-smi >/dev/null 2>&1 && break; sleep 5; done
  nvidia-smi >/dev/null 2>&1 || {{ echo "benchctl: NVIDIA driver not ready after 10 minutes" >&2; exit 1; }}
  GPU_FLAGS=(--gpus all --ipc=host)
fi

if ! command -v docker >/dev/null 2>&1; then
  curl -fsSL https://get.docker.com | sh
fi
if [ "${{#GPU_FLAGS[@]}}" -gt 0 ] && ! docker info 2>/dev/null | grep -qi nvidia; then
  curl -fsSL https://nvidia.github.io/libnvidia-container/gpgkey \
    | gpg --batch --yes --dearmor -o /usr/share/keyrings/nvidia-container-toolkit-keyring.gpg
  curl -fsSL https://nvidia.github.io/libnvidia-container/stable/deb/nvidia-container-toolkit.list \
    | sed 's#deb https://#deb [signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg] https://#g' \
    > /etc/apt/sources.list.d/nvidia-container-toolkit.list
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -yq nvidia-container-toolkit
  nvidia-ctk runtime configure --runtime=docker
  systemctl restart docker
fi

TOKEN_FLAGS=()
if [ -s {hf_token_path} ]; then
  HF_TOKEN="$(cat {hf_token_path})"
  export HF_TOKEN HUGGING_FACE_HUB_TOKEN="$HF_TOKEN"
  TOKEN_FLAGS=(-e HF_TOKEN -e HUGGING_FACE_HUB_TOKEN)
fi

mkdir -p {cache_dir}
docker rm -f {container} >/dev/null 2>&1 || true
"""


def engine_spec(cfg: BenchConfig) -> EngineSpec:
    """The container and command for `cfg.engine_name`; ConfigError for the simulator."""
    name = cfg.engine_name
    if name == "simulator":
        raise ConfigError(
            f"inference_engine = 'simulator' runs only with provider = 'local': a {cfg.provider} GPU host "
            "has no benchctl installed. Choose vllm, sglang, tgi, ollama or llamacpp for a cloud."
        )
    return ENGINES[name]


def _fill(token: str, model: str, port: int) -> str:
    if token in _RUNTIME:
        return _RUNTIME[token]
    return shlex.quote(token.replace("{model}", model).replace("{port}", str(port)))


def render_engine_script(cfg: BenchConfig) -> str:
    """The bash script that starts the engine in the foreground (systemd supervises it)."""
    spec = engine_spec(cfg)
    model, port = cfg.model_name, cfg.engine_port
    image = cfg.engine.image or spec.image
    docker = [
        "docker", "run", "--rm", "--name", CONTAINER, "--network", "host",
        '"${GPU_FLAGS[@]}"', '"${TOKEN_FLAGS[@]}"',
        "-v", shlex.quote(f"{CACHE_DIR}:{spec.cache_mount}"),
    ]
    if cfg.engine_name == "ollama":
        docker += ["-e", 'OLLAMA_HOST="$ADDR:$PORT"']
    if spec.entrypoint:
        docker += ["--entrypoint", shlex.quote(spec.entrypoint)]
    args = [_fill(t, model, port) for t in spec.command] + [shlex.quote(a) for a in cfg.engine.args]
    run = " ".join(docker + [shlex.quote(image)] + args)
    prelude = _PRELUDE.format(
        engine=cfg.engine_name, model_comment=model.replace("\n", " "), port=port, unit=UNIT_NAME,
        hf_token_path=HF_TOKEN_PATH, cache_dir=CACHE_DIR, container=CONTAINER,
    )
    if cfg.engine_name != "ollama":
        return prelude + f"exec {run}\n"
    # Ollama serves first, then pulls the model through its own API; the unit follows the container.
    detached = run.replace("docker run --rm", "docker run -d", 1)
    return prelude + (
        f"{detached} >/dev/null\n"
        'for _ in $(seq 1 300); do curl -sf "http://$ADDR:$PORT/api/version" >/dev/null && break; sleep 1; done\n'
        f"docker exec {CONTAINER} ollama pull {shlex.quote(model)}\n"
        f'exit "$(docker wait {CONTAINER})"\n'
    )


def render_unit() -> str:
    """The systemd unit that runs the script, restarts it on failure and removes the container on stop."""
    return (
        "[Unit]\n"
        "Description=benchctl model server\n"
        "Wants=network-online.target\n"
        "After=network-online.target cloud-final.service\n\n"
        "[Service]\n"
        f"ExecStart={SCRIPT_PATH}\n"
        f"ExecStopPost=-/usr/bin/docker rm -f {CONTAINER}\n"
        "Restart=on-failure\n"
        "RestartSec=15\n"
        "TimeoutStartSec=0\n\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )
