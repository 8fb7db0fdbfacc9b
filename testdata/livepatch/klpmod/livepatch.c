// SPDX-License-Identifier: GPL-2.0
/*
 * Fixture livepatch of a module object: it replaces bm_status_read of
 * binfmt_misc (a module of the image package), whose new version reads
 * the module's own static data:
 *
 *   /proc/sys/fs/binfmt_misc/status reads
 *   "kcare-klp binfmt_misc enabled entries=N" (or "disabled"),
 *
 * where enabled, entries and entries_lock are binfmt_misc's statics. Their
 * relocations are .klp.rela.binfmt_misc..text, which the kernel applies
 * when binfmt_misc is loaded: before the patch, or after it.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/livepatch.h>
#include <linux/fs.h>
#include <linux/list.h>
#include <linux/spinlock.h>
#include <linux/string.h>

/* fs/binfmt_misc.c */
extern int enabled;
extern struct list_head entries;
extern rwlock_t entries_lock;

static ssize_t livepatch_bm_status_read(struct file *file, char __user *buf,
					size_t nbytes, loff_t *ppos)
{
	char s[64];
	struct list_head *p;
	int n = 0;

	read_lock(&entries_lock);
	list_for_each(p, &entries)
		n++;
	read_unlock(&entries_lock);
	snprintf(s, sizeof(s), "kcare-klp binfmt_misc %s entries=%d\n",
		 enabled ? "enabled" : "disabled", n);
	return simple_read_from_buffer(buf, nbytes, ppos, s, strlen(s));
}

static struct klp_func funcs[] = {
	{
		.old_name = "bm_status_read",
		.new_func = livepatch_bm_status_read,
	},
	{ }
};

static struct klp_object objs[] = {
	{
		.name = "binfmt_misc",
		.funcs = funcs,
	},
	{ }
};

static struct klp_patch patch = {
	.mod = THIS_MODULE,
	.objs = objs,
	.replace = true,
};

static int livepatch_init(void)
{
	return klp_enable_patch(&patch);
}

static void livepatch_exit(void)
{
}

module_init(livepatch_init);
module_exit(livepatch_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kcare end-to-end test fixture: klp relocations against a module object");
MODULE_INFO(livepatch, "Y");
