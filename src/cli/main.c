#include <stdio.h>
#include "medscreen/loader.h"
int main(void) { puts("medscreen " MS_VERSION_STRING); return 0; }
