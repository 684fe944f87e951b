from zfile.cli.commands import main

main()
