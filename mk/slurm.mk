# mk/slurm.mk - studies on SLURM (slurm/, cli/cmd_study.c).
#
# slurm/sbatch_template.c pulls slurm/pretrain.sbatch into the binary with the
# assembler's .incbin, which the compiler's dependency files do not see: a
# change to the script must rebuild that object.
$(BUILD)/slurm/sbatch_template.o: slurm/pretrain.sbatch

.PHONY: slurm-cluster-up slurm-cluster-down
# A one-node SLURM cluster on this machine (root; installs slurm-wlm and munge
# when missing): `make slurm-cluster-up`, then `source build/slurm-cluster/env`.
slurm-cluster-up:
	@bash slurm/local-cluster.sh start $(BUILD)/slurm-cluster
slurm-cluster-down:
	@bash slurm/local-cluster.sh stop $(BUILD)/slurm-cluster

# `presight study collect` reads the runs' final.json with json-c (libjson-c-dev),
# the JSON library the data stages use too.

.PHONY: cluster-up cluster-down cluster-faults
# The three-node test cluster (slurm/cluster-nodes.sh: each node a network
# namespace with its own address and hostname; root): `make cluster-up`, then
# `source build/cluster/env` and run clients with `cluster ctl sinfo`.
CLUSTER_NODES ?= 3
cluster-up:
	@bash slurm/cluster-nodes.sh start $(BUILD)/cluster --nodes $(CLUSTER_NODES)
cluster-down:
	@bash slurm/cluster-nodes.sh stop $(BUILD)/cluster
# The fault campaign (nodes killed, cut off mid-checkpoint, brought back) on its
# own cluster: FAULT_ROUNDS rounds from FAULT_SEED; the table goes into CHANGELOG.
FAULT_ROUNDS ?= 6
FAULT_SEED ?= 1
FAULT_KINDS ?= kill ckpt partition
cluster-faults: $(BUILD)/presight
	bash slurm/cluster-faults.sh $(FAULT_ROUNDS) $(FAULT_SEED) "$(FAULT_KINDS)"
