/* exit42: returns 42 from main; the exit status must reach the host. */
int main(void)
{
    return 42;
}
