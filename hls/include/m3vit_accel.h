// The accelerator's top function. Its arguments and their order come from
// m3vit.hw.gen.interface.ARGS, through the generated M3V_TOP_ARGS macro in m3vit_config.h.
#pragma once
#include "fx.h"

void m3vit_accel(M3V_TOP_ARGS);
