// SPDX-License-Identifier: GPL-2.0
/*
 * Livepatch sources kcare-build must refuse, one per KCARE_CASE:
 *
 *   1  a duplicated name without a KCARE_SYMPOS marker (_acpi_module_name)
 *   2  a symbol no object has
 *   3  a non-exported symbol referred to from a section livepatch cannot
 *      relocate in time (a pointer in a custom table)
 *   4  a symbol of a module object referred to from init code, which is
 *      freed before the module may load
 *   5  a marker naming a position the object does not have
 */
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/livepatch.h>
#include <linux/init.h>
#include "kcare/klp.h"

#if KCARE_CASE == 1
extern const char _acpi_module_name[];
const char *kcare_refuse_use(void) { return _acpi_module_name; }
#elif KCARE_CASE == 2
extern int kcare_no_such_symbol;
int kcare_refuse_use(void) { return kcare_no_such_symbol; }
#elif KCARE_CASE == 3
static char **kcare_refuse_table[] __used __section("kcare_table") = { &saved_command_line };
#elif KCARE_CASE == 4
extern int enabled; /* binfmt_misc's */
static int __init kcare_refuse_init(void) { return enabled ? 0 : -EINVAL; }
#elif KCARE_CASE == 5
extern const char _acpi_module_name[];
KCARE_SYMPOS(_acpi_module_name, 1000);
const char *kcare_refuse_use(void) { return _acpi_module_name; }
#else
#error "build with -DKCARE_CASE=N"
#endif

static struct klp_func funcs[] = { { .old_name = "cmdline_proc_show", .new_func = NULL }, { } };
static struct klp_object objs[] = { { .funcs = funcs }, { } };
static struct klp_patch patch = { .mod = THIS_MODULE, .objs = objs };

static int __init livepatch_init(void)
{
#if KCARE_CASE == 4
	if (kcare_refuse_init())
		return -EINVAL;
#endif
	return klp_enable_patch(&patch);
}
module_init(livepatch_init);
MODULE_LICENSE("GPL");
MODULE_INFO(livepatch, "Y");
