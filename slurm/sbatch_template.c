/* sbatch_template.c - slurm/pretrain.sbatch compiled into the binary, so that
 * `presight study submit` writes self-contained batch scripts wherever the
 * binary is installed. The file is read by the assembler (.incbin, resolved
 * from the repository root where make runs) and NUL-terminated;
 * mk/slurm.mk makes this object depend on the script. */
#include "study.h"

__asm__(".section .rodata\n"
        ".global slurm_sbatch_template\n"
        ".type slurm_sbatch_template, @object\n"
        ".balign 16\n"
        "slurm_sbatch_template:\n"
        ".incbin \"slurm/pretrain.sbatch\"\n"
        ".byte 0\n"
        ".size slurm_sbatch_template, . - slurm_sbatch_template\n"
        ".previous\n");
