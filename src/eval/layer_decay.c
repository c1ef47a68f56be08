/* layer_decay.c: layer ids and lr scales of layer-wise lr decay (see
 * layer_decay.h). */
#include "eval/layer_decay.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int cae_layer_id(const char *name, int depth)
{
    if (strcmp(name, "cls_token") == 0 || strcmp(name, "mask_token") == 0 ||
        strcmp(name, "pos_embed") == 0 || strncmp(name, "patch_embed", 11) == 0)
        return 0;
    if (strncmp(name, "blocks.", 7) == 0)
        return atoi(name + 7) + 1;
    return depth + 1;
}

void cae_layer_decay_scales(const cae_param_table *t, int depth, double layer_decay,
                            double *scales)
{
    for (size_t i = 0; i < t->n; i++)
        scales[i] = pow(layer_decay, (double)(depth + 1 - cae_layer_id(t->p[i].name, depth)));
}
