#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--version") == 0) {
            printf("swarmgate %s\n", SG_VERSION);
            return 0;
        }
    }
    fprintf(stderr, "swarmgate: not yet\n");
    return 2;
}
