/* pool: to be written */
#include "medscreen/nn.h"
typedef int ms_nn_pool_placeholder;
