/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kcare/klp.h - what a livepatch source tells kcare-build about the
 * symbols it refers to. kcare-build module puts this header beside the
 * sources; include it as "kcare/klp.h".
 *
 * A patch may call and read what the target kernel does not export:
 * declare the symbol extern as the kernel's source does, and kcare-build
 * turns each reference into a livepatch relocation that the kernel
 * resolves by name when the patch loads. When the name is not unique in
 * the target object (a static function or variable that several files
 * define), say which one is meant, by its position among the symbols of
 * that name in /proc/kallsyms order, counting from 1:
 *
 *	KCARE_SYMPOS(name, pos)			in vmlinux or a patched module
 *	KCARE_SYMPOS_OBJ(object, name, pos)	in that object (vmlinux or a module)
 *
 * kcare-build refuses to guess: a duplicated name without a marker (or a
 * --sympos flag) is an error that lists the candidates. The markers live
 * in a section the kernel never loads, which kcare-build removes.
 *
 * A source may end with
 *
 *	KCARE_LIVEPATCH(objs);
 *
 * where objs is its klp_object array, after including <linux/module.h>
 * and <linux/livepatch.h>. Built alone (kcare-build module --src DIR) it
 * is a livepatch module of its own: a klp_patch with .replace = true,
 * enabled when the module loads. Built with other sources into one
 * cumulative level (--src repeated), kcare-build compiles it as part N
 * (KCARE_PART) and kcare_level.c merges every part's objects into one
 * patch. A source that writes its own klp_patch builds only alone.
 */
#ifndef KCARE_KLP_H
#define KCARE_KLP_H

#define __KCARE_SYMPOS_RECORD(rec)					\
	asm(".pushsection .kcare.sympos,\"\",@progbits\n\t"		\
	    ".asciz \"" rec "\"\n\t"					\
	    ".popsection")

#define KCARE_SYMPOS(name, pos) __KCARE_SYMPOS_RECORD(#name "=" #pos)
#define KCARE_SYMPOS_OBJ(object, name, pos) \
	__KCARE_SYMPOS_RECORD(#object ":" #name "=" #pos)

#ifdef KCARE_PART
#define KCARE_LIVEPATCH(objs) struct klp_object *KCARE_PART = (objs)
#else
#define KCARE_LIVEPATCH(objs)						\
	static struct klp_patch kcare_patch = {				\
		.mod = THIS_MODULE,					\
		.objs = (objs),						\
		.replace = true,					\
	};								\
	static int __init kcare_livepatch_init(void)			\
	{								\
		return klp_enable_patch(&kcare_patch);			\
	}								\
	static void __exit kcare_livepatch_exit(void)			\
	{								\
	}								\
	module_init(kcare_livepatch_init);				\
	module_exit(kcare_livepatch_exit);				\
	MODULE_LICENSE("GPL");						\
	MODULE_INFO(livepatch, "Y")
#endif

#endif /* KCARE_KLP_H */
