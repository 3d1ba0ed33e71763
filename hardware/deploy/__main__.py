from hardware.deploy.command import main

main()
