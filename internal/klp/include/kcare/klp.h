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

#endif /* KCARE_KLP_H */
