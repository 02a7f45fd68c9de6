/* act: to be written */
#include "medscreen/nn.h"
typedef int ms_nn_act_placeholder;
