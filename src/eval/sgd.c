/* sgd.c: torch.optim.SGD's step on the host (see sgd.h). */
#include "eval/sgd.h"

#include "runtime/errors.h"

#include <string.h>

int cae_sgd_parse(const char *opt, cae_sgd *o)
{
    if (opt && (strcmp(opt, "sgd") == 0 || strcmp(opt, "nesterov") == 0)) {
        o->nesterov = 1;
        return 0;
    }
    if (opt && strcmp(opt, "momentum") == 0) {
        o->nesterov = 0;
        return 0;
    }
    cae_errorf("--opt %s: the attentive probe takes sgd (nesterov, as the official "
               "create_optimizer), nesterov or momentum", opt ? opt : "(none)");
    return -1;
}

void cae_sgd_step(const cae_sgd *o, float *p, const float *grad, float *buf, size_t n,
                  double weight_decay)
{
    for (size_t i = 0; i < n; i++) {
        double d = (double)grad[i] + weight_decay * (double)p[i];
        double b = o->momentum * (double)buf[i] + d;
        buf[i] = (float)b;
        d = o->nesterov ? d + o->momentum * b : b;
        p[i] = (float)((double)p[i] - o->lr * d);
    }
}
