"""A small, dated price table for `benchctl plan`: on-demand list prices, USD per hour.

Honest limits:
- These are public list prices as best known to the people who compiled the table on
  PRICE_TABLE_DATE; they were not fetched live and are not verified against a bill. Prices change
  (AWS cut P4/P5 prices by up to 45 % in June 2025, for example): check the providers' pricing
  pages before spending real money.
- One reference region per provider (REFERENCE_REGION); other regions usually cost 0-30 % more.
- Compute only: disks, IP addresses, egress and taxes are not included. Spot is estimated at the
  on-demand price (an upper bound).
- Scaleway prices are in EUR on Scaleway's site; they are converted here at EUR_TO_USD.

Sources: aws.amazon.com/ec2/pricing/on-demand, cloud.google.com/compute/vm-instance-pricing and
cloud.google.com/compute/gpus-pricing, www.scaleway.com/en/pricing/gpu and /virtual-instances.
"""

from __future__ import annotations

PRICE_TABLE_DATE = "2026-12-03"
EUR_TO_USD = 1.15
REFERENCE_REGION = {"aws": "us-east-1", "gcp": "us-central1", "scaleway": "fr-par"}

_AWS = {
    # GPU
    "g4dn.xlarge": 0.526, "g4dn.2xlarge": 0.752, "g4dn.12xlarge": 3.912,
    "g5.xlarge": 1.006, "g5.2xlarge": 1.212, "g5.12xlarge": 5.672, "g5.48xlarge": 16.288,
    "g6.xlarge": 0.8048, "g6.2xlarge": 0.9776, "g6.12xlarge": 4.6016,
    "g6e.xlarge": 1.861, "g6e.2xlarge": 2.24208,
    "p3.2xlarge": 3.06, "p3.8xlarge": 12.24,
    "p4d.24xlarge": 21.96, "p5.48xlarge": 55.04,
    # CPU (launchers)
    "t3.micro": 0.0104, "t3.small": 0.0208, "t3.medium": 0.0416, "t3.large": 0.0832,
    "t4g.micro": 0.0084, "t4g.small": 0.0168, "c6i.large": 0.085, "m6i.large": 0.096,
}

_GCP_MACHINES = {
    "n1-standard-4": 0.189999, "n1-standard-8": 0.379998, "n1-standard-16": 0.759996,
    "a2-highgpu-1g": 3.673385, "a2-highgpu-2g": 7.34677, "a2-ultragpu-1g": 5.0688,
    "g2-standard-4": 0.70683, "g2-standard-8": 0.85362, "g2-standard-12": 1.00041,
    "e2-micro": 0.008376, "e2-small": 0.016751, "e2-medium": 0.033503, "e2-standard-2": 0.067006,
}
_GCP_ACCELERATORS = {  # per GPU, on top of an N1 machine
    "nvidia-tesla-t4": 0.35, "nvidia-tesla-p4": 0.60, "nvidia-tesla-v100": 2.48, "nvidia-tesla-p100": 1.46,
}

_SCALEWAY_EUR = {
    "GPU-3070-S": 0.98, "L4-1-24G": 0.75, "L4-2-24G": 1.50, "L40S-1-48G": 1.40, "L40S-2-48G": 2.80,
    "H100-1-80G": 2.73, "H100-2-80G": 5.46, "RENDER-S": 1.221,
    "DEV1-S": 0.0088, "DEV1-M": 0.0198, "PLAY2-PICO": 0.014, "PRO2-XXS": 0.055,
}


def instance_hourly_usd(provider: str, instance_type: str) -> float | None:
    """On-demand USD/hour of one instance (GCP: the machine type alone), None when not in the table."""
    if provider == "aws":
        return _AWS.get(instance_type)
    if provider == "gcp":
        return _GCP_MACHINES.get(instance_type)
    if provider == "scaleway":
        eur = _SCALEWAY_EUR.get(instance_type)
        return None if eur is None else round(eur * EUR_TO_USD, 4)
    if provider == "local":
        return 0.0
    return None


def accelerator_hourly_usd(accelerator: str) -> float | None:
    """GCP: USD/hour of one attached GPU (`guest_accelerators`), None when not in the table."""
    return _GCP_ACCELERATORS.get(accelerator)



def gpu_host_hourly_usd(provider: str, instance_type: str) -> float | None:
    """USD/hour of the model-server instance as bench.toml writes it (GCP: machine + attached GPUs)."""
    if provider != "gcp":
        return instance_hourly_usd(provider, instance_type)
    from stacks.gcp_machine import parse_instance_type

    spec = parse_instance_type(instance_type)
    machine = _GCP_MACHINES.get(spec.machine_type)
    if machine is None or spec.accelerator is None:
        return machine
    gpu = _GCP_ACCELERATORS.get(spec.accelerator)
    return None if gpu is None else round(machine + spec.count * gpu, 6)
