// SPDX-License-Identifier: GPL-2.0
/*
 * crash_test: not a customization.  Lets the harness check that it
 * recognises kernel crashes on the console.  At load time, per "mode":
 *	null		NULL pointer dereference (oops; insmod is killed)
 *	bug		BUG()
 *	warn		WARN_ON(1), module stays loaded
 *	sleep_atomic	sleeps with a spinlock held ("sleeping function
 *			called from invalid context" with
 *			DEBUG_ATOMIC_SLEEP, else "scheduling while atomic")
 *	none		nothing
 */
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/kernel.h>
#include <linux/spinlock.h>
#include <linux/delay.h>
#include <linux/bug.h>

static char *mode = "none";
module_param(mode, charp, 0444);
MODULE_PARM_DESC(mode, "null|bug|warn|sleep_atomic|none");

static DEFINE_SPINLOCK(crash_lock);

/* Hidden from the optimiser so the dereference really happens. */
static noinline int *crash_null_ptr(void)
{
	int *p = NULL;

	OPTIMIZER_HIDE_VAR(p);
	return p;
}

static int __init crash_test_init(void)
{
	pr_info("crash_test: mode=%s\n", mode);
	if (!strcmp(mode, "null")) {
		WRITE_ONCE(*crash_null_ptr(), 1);
	} else if (!strcmp(mode, "bug")) {
		BUG();
	} else if (!strcmp(mode, "warn")) {
		WARN_ON(1);
	} else if (!strcmp(mode, "sleep_atomic")) {
		spin_lock(&crash_lock);
		might_sleep();
		msleep(1);
		spin_unlock(&crash_lock);
	} else if (strcmp(mode, "none")) {
		pr_err("crash_test: unknown mode %s\n", mode);
		return -EINVAL;
	}
	return 0;
}

static void __exit crash_test_exit(void)
{
}

module_init(crash_test_init);
module_exit(crash_test_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Layer 4.5 harness: trigger a recognisable kernel crash");
