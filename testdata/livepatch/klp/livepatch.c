// SPDX-License-Identifier: GPL-2.0
/*
 * Fixture livepatch that reaches what vmlinux does not export, as a real
 * fix does. It replaces the static cmdline_proc_show, and the new one
 * prints one line built from non-exported code and data:
 *
 *   kcare-klp argv=<ARGV> num=4711 acpi=<NAME> schedstats=<0|1> cmdline=<CMDLINE>
 *
 *   ARGV        the reader's command line, from get_cmdline()
 *               (a global function vmlinux does not export)
 *   num         skip_atoi("4711kcare"), a static function of lib/vsprintf.c
 *   NAME        the second of the 107 static _acpi_module_name strings:
 *               a duplicated name, chosen with KCARE_SYMPOS
 *   schedstats  static_branch_unlikely(&sched_schedstats), a static key
 *               vmlinux does not export (a __jump_table entry), which
 *               `sysctl kernel.sched_schedstats=1` turns on
 *   CMDLINE     saved_command_line (not exported), read through a
 *               pointer in .data; get_cmdline through a pointer in .rodata
 *
 * kcare-build module turns each of those references into a livepatch
 * relocation resolved against the kernel's kallsyms.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/livepatch.h>
#include <linux/seq_file.h>
#include <linux/sched.h>
#include <linux/init.h>
#include <linux/mm.h>
#include <linux/jump_label.h>
#include "kcare/klp.h"

/* lib/vsprintf.c: static noinline_for_stack int skip_atoi(const char **s) */
extern int skip_atoi(const char **s);
/* drivers/acpi/acpica: static const char _acpi_module_name[] = "..." in each file */
extern const char _acpi_module_name[];
KCARE_SYMPOS(_acpi_module_name, 2);
/* kernel/sched/stats.h */
extern struct static_key_false sched_schedstats;

/*
 * Data that points at non-exported symbols: .data and .rodata relocations.
 * READ_ONCE keeps the compiler from folding the pointers away; the .data
 * one is global, or the compiler would see nothing writes it and move it
 * to .rodata.
 */
char **kcare_klp_cmdline_ptr = &saved_command_line;
static int (*const get_cmdline_ptr)(struct task_struct *, char *, int) = get_cmdline;

static int livepatch_cmdline_proc_show(struct seq_file *m, void *v)
{
	char argv[64];
	const char *digits = "4711kcare";
	int n, i, num;

	n = READ_ONCE(get_cmdline_ptr)(current, argv, sizeof(argv) - 1);
	if (n < 0)
		n = 0;
	while (n > 0 && argv[n - 1] == '\0')
		n--;
	for (i = 0; i < n; i++)
		if (argv[i] == '\0')
			argv[i] = ' ';
	argv[n] = '\0';
	num = skip_atoi(&digits);
	seq_printf(m, "kcare-klp argv=%s num=%d acpi=%s schedstats=%d cmdline=%s\n",
		   argv, num, _acpi_module_name,
		   static_branch_unlikely(&sched_schedstats) ? 1 : 0, *READ_ONCE(kcare_klp_cmdline_ptr));
	return 0;
}

static struct klp_func funcs[] = {
	{
		.old_name = "cmdline_proc_show",
		.new_func = livepatch_cmdline_proc_show,
	},
	{ }
};

static struct klp_object objs[] = {
	{
		/* name being NULL means vmlinux */
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
MODULE_DESCRIPTION("kcare end-to-end test fixture: klp relocations against vmlinux");
MODULE_INFO(livepatch, "Y");
