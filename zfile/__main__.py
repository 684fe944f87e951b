from zfile.cli import main

main()
