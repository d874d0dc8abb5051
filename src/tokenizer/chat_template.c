// placeholder
#include "internal.h"
void chat_template__free(struct jinja_tmpl *j) { (void)j; }
int chat_template__compile(struct tokenizer *t, const char *src, struct lfmd_err_ctx *err) { (void)t; (void)src; (void)err; return 0; }
int tokenizer_apply_template(const struct tokenizer *t, const struct json *messages, bool agp, const struct json *kwargs, const struct json *tools, char **out, struct lfmd_err_ctx *err) { (void)t;(void)messages;(void)agp;(void)kwargs;(void)tools;*out=NULL; return lfmd_err_set(err, LFMD_ENOTSUP, "x"); }
