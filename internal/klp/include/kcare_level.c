// SPDX-License-Identifier: GPL-2.0
/*
 * kcare_level.c - the patch of a cumulative level. kcare-build module
 * writes this file when it builds several livepatch sources (--src,
 * repeated) into one module: each source, compiled as part N, hands over
 * its klp_object array through KCARE_LIVEPATCH (kcare/klp.h), and this
 * file merges them into one klp_patch with .replace = true: one
 * klp_object per patched object, holding every part's functions for it,
 * in the order the parts were given.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/livepatch.h>
#include <linux/slab.h>
#include <linux/string.h>
#include "kcare_parts.h"

#define KCARE_DECLARE_PART(part) extern struct klp_object *part;
KCARE_PARTS(KCARE_DECLARE_PART)

#define KCARE_LIST_PART(part) &part,
static struct klp_object **kcare_parts[] = { KCARE_PARTS(KCARE_LIST_PART) NULL };

static struct klp_object *kcare_objs;

static struct klp_patch kcare_patch = {
	.mod = THIS_MODULE,
	.replace = true,
};

static bool kcare_same_object(const struct klp_object *a, const struct klp_object *b)
{
	if (!a->name || !b->name)
		return a->name == b->name;
	return strcmp(a->name, b->name) == 0;
}

static bool kcare_has_callbacks(const struct klp_object *o)
{
	return o->callbacks.pre_patch || o->callbacks.post_patch ||
	       o->callbacks.pre_unpatch || o->callbacks.post_unpatch;
}

static void kcare_free(void)
{
	struct klp_object *o;

	if (!kcare_objs)
		return;
	for (o = kcare_objs; o->funcs; o++)
		kfree(o->funcs);
	kfree(kcare_objs);
	kcare_objs = NULL;
}

/* kcare_merge fills kcare_objs from the parts. */
static int kcare_merge(void)
{
	struct klp_object ***part;
	struct klp_object *o, *lo;
	struct klp_func *f, *g;
	int nobjs = 0, n = 0;

	for (part = kcare_parts; *part; part++)
		for (o = **part; o->funcs; o++)
			nobjs++;
	kcare_objs = kcalloc(nobjs + 1, sizeof(*kcare_objs), GFP_KERNEL);
	if (!kcare_objs)
		return -ENOMEM;

	for (part = kcare_parts; *part; part++) {
		for (o = **part; o->funcs; o++) {
			for (lo = kcare_objs; lo < kcare_objs + n; lo++)
				if (kcare_same_object(lo, o))
					break;
			if (lo == kcare_objs + n) {
				lo->name = o->name;
				n++;
			}
			if (kcare_has_callbacks(o)) {
				if (kcare_has_callbacks(lo)) {
					pr_err("two parts have callbacks for %s\n", o->name ? o->name : "vmlinux");
					return -EINVAL;
				}
				lo->callbacks = o->callbacks;
			}
		}
	}

	for (lo = kcare_objs; lo < kcare_objs + n; lo++) {
		int nfuncs = 0, i = 0;

		for (part = kcare_parts; *part; part++)
			for (o = **part; o->funcs; o++)
				if (kcare_same_object(lo, o))
					for (f = o->funcs; f->old_name; f++)
						nfuncs++;
		/* The array ends with an empty klp_func, as the kernel wants. */
		lo->funcs = kcalloc(nfuncs + 1, sizeof(*lo->funcs), GFP_KERNEL);
		if (!lo->funcs)
			return -ENOMEM;
		for (part = kcare_parts; *part; part++) {
			for (o = **part; o->funcs; o++) {
				if (!kcare_same_object(lo, o))
					continue;
				for (f = o->funcs; f->old_name; f++) {
					for (g = lo->funcs; g < lo->funcs + i; g++) {
						if (!strcmp(g->old_name, f->old_name) && g->old_sympos == f->old_sympos) {
							pr_err("two parts replace %s of %s\n", f->old_name, lo->name ? lo->name : "vmlinux");
							return -EINVAL;
						}
					}
					lo->funcs[i].old_name = f->old_name;
					lo->funcs[i].new_func = f->new_func;
					lo->funcs[i].old_sympos = f->old_sympos;
					i++;
				}
			}
		}
	}
	kcare_patch.objs = kcare_objs;
	return 0;
}

static int __init kcare_level_init(void)
{
	int ret = kcare_merge();

	if (!ret)
		ret = klp_enable_patch(&kcare_patch);
	if (ret)
		kcare_free();
	return ret;
}

/*
 * The module goes only once its patch is disabled and the kernel has let
 * go of the objects.
 */
static void __exit kcare_level_exit(void)
{
	kcare_free();
}

module_init(kcare_level_init);
module_exit(kcare_level_exit);
MODULE_LICENSE("GPL");
MODULE_INFO(livepatch, "Y");
