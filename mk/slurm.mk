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
