/* Directory listing for tests: calls back once per entry of a directory
 * (dot files skipped) with its full path and whether it is a directory. */
#ifndef SG_TEST_DIRWALK_H
#define SG_TEST_DIRWALK_H

#include <stdbool.h>

typedef void (*sg_dirwalk_cb)(const char *path, const char *name, bool is_dir, void *arg);

/* Number of entries visited, -1 when dir cannot be opened. */
int sg_dirwalk(const char *dir, sg_dirwalk_cb cb, void *arg);

#endif
