from kimonaudit.cli import main

main()
