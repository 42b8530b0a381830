/* SPDX-License-Identifier: Apache-2.0 */
/* sl/sysres.h - the machine resources a service sizes itself by: open-file
 * limit and usable CPUs, as a container or cgroup grants them rather than as
 * the host has them. */
#ifndef SL_SYSRES_H
#define SL_SYSRES_H
#include <stdint.h>

/* Raise the soft RLIMIT_NOFILE to the hard limit (runtimes often start
 * processes with a soft limit of 1024 and a far higher hard one). Returns
 * the soft limit in force afterwards; never fails the caller. */
uint64_t sysres_raise_nofile(void);

/* CPUs this process may use: the CPUs of its affinity mask, capped by the
 * cgroup v2 CPU quota (cpu.max, rounded up) when one is set. At least 1. */
unsigned sysres_cpus(void);

/* Parse the text of a cgroup v2 cpu.max file ("max 100000" or
 * "<quota> <period>"). Returns 0 and sets *cpus to ceil(quota / period), or
 * 0 CPUs for "max" (no quota); -1 on anything else. I/O-free. */
int sysres_cpu_max_parse(const char *text, unsigned *cpus);

#endif
