#!/bin/bash
# The same run on two machines with torchrun (4 GPUs each). Start it on both machines:
#   NODE_RANK=0 MASTER_ADDR=<node0 address> bash scripts/torchrun_two_nodes.sh
#   NODE_RANK=1 MASTER_ADDR=<node0 address> bash scripts/torchrun_two_nodes.sh
# Both name the same --run_dir (on a shared file system); only global rank 0 writes there.
set -euo pipefail
: "${NODE_RANK:?set NODE_RANK (0 or 1)}" "${MASTER_ADDR:?set MASTER_ADDR to the address of node 0}"
RUN_DIR=${RUN_DIR:-runs/simclr-cifar10unb/torchrun}
.venv/bin/python -m torch.distributed.run \
  --nnodes 2 --node_rank "${NODE_RANK}" --nproc_per_node 4 \
  --master_addr "${MASTER_ADDR}" --master_port "${MASTER_PORT:-29500}" \
  -m ssl_norms.cli fit \
  -c configs/base/simclr.yaml -c configs/data/cifar10_unbalanced.yaml \
  --trainer.accelerator gpu --trainer.devices 4 --trainer.num_nodes 2 --trainer.strategy ddp \
  --run_dir "${RUN_DIR}"
