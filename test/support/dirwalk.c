#include "support/dirwalk.h"

#include <dirent.h>
#include <stdio.h>
#include <sys/stat.h>

int sg_dirwalk(const char *dir, sg_dirwalk_cb cb, void *arg)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        struct stat st;
        bool is_dir = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
        cb(path, e->d_name, is_dir, arg);
        n++;
    }
    closedir(d);
    return n;
}
