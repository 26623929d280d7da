/* no_dlclose - preloaded into the sanitizer runs only (tests/t_sanitizers.sh):
 * dlclose does nothing, so that Open MPI's components stay mapped until exit
 * and LeakSanitizer can name the module behind each of their allocations (an
 * unloaded one shows as "<unknown module>", which no suppression can match). */
int dlclose(void *handle);
int dlclose(void *handle) {
    (void)handle;
    return 0;
}
