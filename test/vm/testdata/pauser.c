/* pauser sleeps in pause(2) until killed: a task asleep in __x64_sys_pause,
 * which the stall fixture patches, so that its transition cannot finish. */
#include <unistd.h>

int main(void)
{
	for (;;)
		pause();
}
