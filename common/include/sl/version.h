/* SPDX-License-Identifier: Apache-2.0 */
/* sl/version.h - what this build is: the project version (CMakeLists.txt)
 * and the git commit it was built from ("unknown" outside a git tree,
 * "-dirty" with uncommitted changes). Printed by every program's --version
 * and exported as sluice_build_info{version,commit} 1. */
#ifndef SL_VERSION_H
#define SL_VERSION_H

extern const char sl_version[];
extern const char sl_commit[];

#endif
